// libFuzzer target: ParseIdList, the parser of sysfs id lists ("0-3,8,10-11") read from
// /sys/devices/system/node. Whatever it accepts must format and parse back to the same ids.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/numa.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<int> ids;
  if (!pagefuse::ParseIdList(text, &ids)) return 0;
  std::vector<int> again;
  if (!pagefuse::ParseIdList(pagefuse::FormatIdList(ids), &again) || again != ids) __builtin_trap();
  return 0;
}
