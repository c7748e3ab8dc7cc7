// A minimal check harness for the native unit tests: CHECK(cond) and CHECK_EQ(a, b) record failures,
// and TEST_MAIN reports them and sets the exit code ctest reads.
#pragma once

#include <cstdio>
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
