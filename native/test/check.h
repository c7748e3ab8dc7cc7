// A minimal check harness for the native unit tests: CHECK(cond) and CHECK_EQ(a, b) record failures,
// and TEST_MAIN reports them and sets the exit code ctest reads.
#pragma once

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pagefuse_test {

inline int& Failures() {
  static int failures = 0;
  return failures;
}

inline std::vector<std::pair<const char*, std::function<void()>>>& Registry() {
  static std::vector<std::pair<const char*, std::function<void()>>> tests;
  return tests;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { Registry().emplace_back(name, std::move(fn)); }
};

inline int RunAll() {
  int failed_tests = 0;
  for (auto& [name, fn] : Registry()) {
    int before = Failures();
    fn();
    bool ok = Failures() == before;
    if (!ok) failed_tests++;
    std::printf("%s - %s\n", ok ? "ok" : "not ok", name);
  }
  std::printf("%zu passed, %d failed\n", Registry().size() - failed_tests, failed_tests);
  return failed_tests == 0 ? 0 : 1;
}

// A kB figure of this process's /proc/self/status (`key` with its colon, e.g. "VmRSS:"), or -1.
inline long StatusKib(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, key, n) == 0) kib = std::strtol(line + n, nullptr, 10);
  }
  std::fclose(f);
  return kib;
}

// This process's RssAnon in bytes, or -1.
inline long RssAnonBytes() {
  const long kib = StatusKib("RssAnon:");
  return kib < 0 ? -1 : kib * 1024;
}

// Whether a read fault on never-written anonymous memory maps the shared zero page (mainline Linux) or
// allocates a fresh exclusive page (our development kernel, booted with pvm_no_zero_page=1; docs/kernel.md).
// The same probe as test/helpers/zero-page.ts: read a byte of each page of a fresh 16 MiB mapping (no huge
// pages) and watch RssAnon, which the zero page never counts in.
inline bool ReadFaultMapsZeroPage() {
  static const bool answer = [] {
    const size_t pages = 4096, page = 4096;
    void* m = mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return true;
    madvise(m, pages * page, MADV_NOHUGEPAGE);
    auto* p = static_cast<volatile unsigned char*>(m);
    long before = RssAnonBytes();
    unsigned sum = 0;
    for (size_t i = 0; i < pages; i++) sum += p[i * page];
    long grown = RssAnonBytes() - before;
    munmap(m, pages * page);
    return sum == 0 && grown < static_cast<long>(pages * page / 2);
  }();
  return answer;
}

}  // namespace pagefuse_test

#define PF_CONCAT2(a, b) a##b
#define PF_CONCAT(a, b) PF_CONCAT2(a, b)
#define TEST(name)                                                                         \
  static void name();                                                                      \
  static pagefuse_test::Register PF_CONCAT(register_, name)(#name, name);                  \
  static void name()

#define CHECK(cond)                                                                        \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);        \
      pagefuse_test::Failures()++;                                                         \
    }                                                                                      \
  } while (0)

#define CHECK_EQ(a, b)                                                                     \
  do {                                                                                     \
    auto pf_a = (a);                                                                       \
    auto pf_b = (b);                                                                       \
    if (!(pf_a == pf_b)) {                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK_EQ(%s, %s) failed: %s vs %s\n", __FILE__, __LINE__, #a, #b, \
                   std::to_string(pf_a).c_str(), std::to_string(pf_b).c_str());           \
      pagefuse_test::Failures()++;                                                         \
    }                                                                                      \
  } while (0)

#define TEST_MAIN() \
  int main() { return pagefuse_test::RunAll(); }
