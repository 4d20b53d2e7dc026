#include "cli/cli.h"

int main(int argc, char** argv) { return air::cli::run(argc, argv); }
