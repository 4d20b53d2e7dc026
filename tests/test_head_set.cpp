#include "air/error.h"
#include "air/head_set.h"

#include <gtest/gtest.h>

namespace air {
namespace {

TEST(HeadSetTest, ParsesSortsAndDeduplicates) {
  const HeadSet s = HeadSet::parse(" 3:1, 0:2,3:1 ,0:0");
  EXPECT_EQ(s.to_string(), "0:0,0:2,3:1");
  EXPECT_EQ(s.heads_in_layer(0), (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(s.heads_in_layer(1).empty());
  EXPECT_EQ(s.first_layer(), 0);
  EXPECT_TRUE(s.contains({3, 1}));
  EXPECT_FALSE(s.contains({3, 2}));
  EXPECT_EQ(HeadSet::parse(s.to_string()).heads(), s.heads());
  EXPECT_TRUE(HeadSet::parse("").empty());
}

TEST(HeadSetTest, RejectsMalformedSpecs) {
  for (const char* bad : {"3", "3:", ":1", "a:1", "1:-2", "1:2,,", "1:2:3"})
    EXPECT_THROW(HeadSet::parse(bad), UsageError) << bad;
}

TEST(HeadSetTest, ValidateNamesTheHeadAndTheModelShape) {
  const HeadSet s = HeadSet::parse("1:1,4:0");
  try {
    s.validate(4, 8);
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("head 4:0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("4 layers x 8"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(s.validate(5, 2));
}

}  // namespace
}  // namespace air
