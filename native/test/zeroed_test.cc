#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "core/zeroed.h"
#include "test/check.h"

using namespace pagefuse;

namespace {

// The VmFlags line of the mapping of /proc/self/smaps that holds `addr`, or "" when none does.
std::string VmFlagsOf(const void* addr) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = a >= lo && a < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

}  // namespace

// MADV_HUGEPAGE shows as "hg" in VmFlags whether or not the kernel then finds a huge page.
TEST(zeroed_arrays_from_half_a_huge_page_up_ask_for_huge_pages) {
  for (size_t bytes : {size_t{1} << 20, size_t{2} << 20, size_t{4} << 20, (size_t{4} << 20) + 8}) {
    auto* p = static_cast<unsigned char*>(MapZeroed(bytes));
    CHECK(p != nullptr);
    CHECK_EQ(reinterpret_cast<uintptr_t>(p) % (size_t{2} << 20), uintptr_t{0});
    CHECK(VmFlagsOf(p).find(" hg") != std::string::npos);
    CHECK(p[0] == 0 && p[bytes - 1] == 0);
    FreeZeroed(p, bytes);
  }
}

TEST(small_zeroed_arrays_are_plain_pages) {
  auto* p = static_cast<unsigned char*>(MapZeroed(4096));
  CHECK(p != nullptr);
  CHECK(VmFlagsOf(p).find(" hg") == std::string::npos);
  CHECK(p[0] == 0 && p[4095] == 0);
  FreeZeroed(p, 4096);
}

TEST_MAIN()
