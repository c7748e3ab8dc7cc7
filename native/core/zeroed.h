// Zero-filled arrays for a scan's index structures and page checksums, mapped directly rather than
// through malloc. From 512 KiB up they are rounded up to whole 2 MiB transparent huge pages, where the
// kernel allows them, and populated in one call: the index is probed at random places, and with 4 KiB
// pages each probe was a TLB miss (measured on 512 MiB: half the cost of inserting); and a fresh array
// of 4 KiB pages took a page fault per page, which in this VM cost more than zeroing a huge page.
// Plain C++, no Node headers.
#pragma once

#include <cstddef>
#include <new>

namespace pagefuse {

// Maps `bytes` of zeroed, populated memory (see above); nullptr when the mapping fails.
void* MapZeroed(size_t bytes);
// Unmaps what MapZeroed(bytes) returned.
void FreeZeroed(void* addr, size_t bytes);

// An array of n zero-initialized T (T must be valid as all-zero bytes: integers, std::atomic of them).
// Throws std::bad_alloc when the memory cannot be mapped, as new would.
template <class T>
class ZeroedArray {
 public:
  ZeroedArray() = default;
  ZeroedArray(const ZeroedArray&) = delete;
  ZeroedArray& operator=(const ZeroedArray&) = delete;
  ZeroedArray(ZeroedArray&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  ZeroedArray& operator=(ZeroedArray&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = other.data_;
      bytes_ = other.bytes_;
      other.data_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  ~ZeroedArray() { reset(); }

  // Drops the current array, then maps one of n elements (none for n = 0).
  void reset(size_t n = 0) {
    if (data_ != nullptr) FreeZeroed(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
    if (n == 0) return;
    void* p = MapZeroed(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    data_ = static_cast<T*>(p);
    bytes_ = n * sizeof(T);
  }
  T* get() const { return data_; }
  T& operator[](size_t i) const { return data_[i]; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  T* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace pagefuse
