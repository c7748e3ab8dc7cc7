// libFuzzer target: ReadAnonMappings, the parser of /proc/<pid>/smaps behind every scan of a process.
// Each input becomes the smaps file of pid 1 under a private fake /proc and is read both ways
// (every anonymous mapping, mergeable ones only); a mergeable-only list can never be the longer one.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/procmem.h"

namespace {
std::string g_root;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/pagefuse-smaps-fuzz-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) std::abort();
  g_root = tmpl;
  if (mkdir((g_root + "/1").c_str(), 0700) != 0) std::abort();
  // A stat file, so that an smaps without any mapping reads as "no mappings", not as "process gone".
  FILE* stat = std::fopen((g_root + "/1/stat").c_str(), "w");
  if (stat == nullptr) std::abort();
  std::fputs("1 (init) S 0 1 1 0 -1 0\n", stat);
  std::fclose(stat);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FILE* f = std::fopen((g_root + "/1/smaps").c_str(), "w");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  std::vector<pagefuse::AnonMapping> all;
  std::vector<pagefuse::AnonMapping> mergeable;
  int a = pagefuse::ReadAnonMappings(g_root, 1, false, &all);
  int m = pagefuse::ReadAnonMappings(g_root, 1, true, &mergeable);
  if (a != m || mergeable.size() > all.size()) __builtin_trap();
  return 0;
}
