#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "core/mapping.h"
#include "core/process.h"
#include "test/check.h"

using namespace pagefuse;

TEST(map_anonymous_gives_zeroed_writable_pages) {
  int err = -1;
  size_t len = 4 * PageSize();
  auto* p = static_cast<unsigned char*>(MapAnonymous(len, HugePages::kNever, &err));
  CHECK(p != nullptr);
  CHECK_EQ(err, 0);
  for (size_t i = 0; i < len; i++) CHECK(p[i] == 0);
  std::memset(p, 0x5a, len);
  CHECK_EQ(static_cast<int>(p[len - 1]), 0x5a);
  Mapping* m = new Mapping(p, len);
  CHECK(m->Dispose());
  CHECK(m->unmapped());
  m->Unref();
}

TEST(map_failure_reports_errno) {
  int err = 0;
  void* p = MapAnonymous(size_t{1} << 62, HugePages::kDefault, &err);
  CHECK(p == nullptr);
  CHECK_EQ(err, ENOMEM);
}

TEST(advise_every_kind_and_reject_unaligned) {
  int err = 0;
  size_t len = 8 * PageSize();
  auto* p = static_cast<unsigned char*>(MapAnonymous(len, HugePages::kDefault, &err));
  for (Advice a : {Advice::kMergeable, Advice::kUnmergeable, Advice::kHugepage, Advice::kNohugepage,
                   Advice::kDontneed, Advice::kCold, Advice::kPageout}) {
    CHECK_EQ(AdviseRange(p, len, a), 0);
  }
  CHECK_EQ(AdviseRange(p + 1, PageSize(), Advice::kMergeable), EINVAL);
  munmap(p, len);
}

TEST(pinned_mapping_is_unmapped_by_the_last_unpin) {
  int err = 0;
  size_t len = PageSize();
  void* p = MapAnonymous(len, HugePages::kDefault, &err);
  Mapping* m = new Mapping(p, len);
  m->Ref();
  CHECK(m->Pin());
  CHECK(!m->Dispose());
  CHECK(!m->unmapped());
  CHECK(!m->Pin());  // disposed: no new pins
  CHECK(m->Unpin());
  CHECK(m->unmapped());
  CHECK(!m->Unref());
  CHECK(!m->Unref());  // last reference: deletes, memory already unmapped
}

TEST(unref_of_an_undisposed_mapping_unmaps) {
  int err = 0;
  void* p = MapAnonymous(PageSize(), HugePages::kDefault, &err);
  Mapping* m = new Mapping(p, PageSize());
  CHECK(m->Unref());
}

TEST(memory_merge_flag_round_trips) {
  int before = GetMemoryMerge();
  CHECK(before == 0 || before == 1);
#ifdef __SANITIZE_ADDRESS__
  // Switching it off unmerges every mergeable VMA, and ASan's shadow reserves terabytes of them:
  // minutes of kernel time for nothing this test checks.
  return;
#endif
  CHECK_EQ(SetMemoryMerge(true), 0);
  CHECK_EQ(GetMemoryMerge(), 1);
  CHECK_EQ(SetMemoryMerge(false), 0);
  CHECK_EQ(GetMemoryMerge(), 0);
}

TEST_MAIN()
