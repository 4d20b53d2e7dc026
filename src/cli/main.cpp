#include "cli/cli.h"

#include <cstdlib>

#include <unistd.h>

int main(int argc, char** argv) {
  // OpenMP threads that wait by spinning take the CPUs of a loaded or shared node from the
  // threads doing the work (200 GSM8K records with one other busy process on 2 cores: 38 s with
  // 2 spinning threads, 15 s passive, 11 s with 1 thread). OpenMP reads its wait policy when it
  // loads, before main: unless the user chose one, air restarts itself once with PASSIVE.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // if that fails, air runs on as it is
  }
  return air::cli::run(argc, argv);
}
