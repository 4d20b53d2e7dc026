#include "air/error.h"

#include <utility>

namespace air {
namespace {

std::function<std::string(const std::string&)>& spelling() {
  static std::function<std::string(const std::string&)> spell;
  return spell;
}

}  // namespace

std::string option_name(const std::string& option) {
  return spelling() ? spelling()(option) : "`" + option + "`";
}

void set_option_spelling(std::function<std::string(const std::string& option)> spell) {
  spelling() = std::move(spell);
}

}  // namespace air
