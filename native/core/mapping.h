// Anonymous private memory mappings owned by JavaScript Regions.
// Plain C++: no Node headers. Errors are returned as positive errno values (0 = success).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pagefuse {

size_t PageSize();

enum class HugePages { kDefault, kNever, kAlways };

enum class Advice { kMergeable, kUnmergeable, kHugepage, kNohugepage, kDontneed, kCold, kPageout };

// Maps `bytes` (already rounded up to the page size by the caller) of anonymous private memory.
// Returns nullptr and sets *err on failure.
void* MapAnonymous(size_t bytes, HugePages huge, int* err);

// madvise over [addr, addr+len); returns 0 or errno.
int AdviseRange(void* addr, size_t len, Advice advice);

// A mapping shared by several owners (the JS handle, its ArrayBuffer, running scans).
// The memory is unmapped once it has been disposed and no scan holds it, or once nobody refers to it.
class Mapping {
 public:
  Mapping(void* addr, size_t length) : addr_(addr), length_(length) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  void* addr() const { return addr_; }
  size_t length() const { return length_; }
  bool disposed() const { return disposed_.load(std::memory_order_acquire); }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Drops one reference; deletes the Mapping (unmapping if still mapped) when it was the last.
  // Returns true when the memory was unmapped by this call.
  bool Unref();

  // A scan pins the memory so that dispose() cannot unmap it underneath the worker thread.
  // Pin fails (returns false) once the mapping was disposed.
  bool Pin();
  // Returns true when the memory was unmapped by this call (dispose() was waiting on the pin).
  bool Unpin();

  // Marks the mapping disposed; unmaps now unless pinned (then the last Unpin unmaps).
  // Returns true when the memory was unmapped by this call; false if already disposed or pinned.
  bool Dispose();

  bool unmapped() const { return unmapped_.load(std::memory_order_acquire); }

 private:
  bool UnmapOnce();

  void* addr_;
  size_t length_;
  std::atomic<int> refs_{1};
  std::atomic<int> pins_{0};
  std::atomic<bool> disposed_{false};
  std::atomic<bool> unmapped_{false};
};

}  // namespace pagefuse
