#include <cstring>

#include "core/mapping.h"
#include "core/zero.h"
#include "test/check.h"

using namespace pagefuse;

TEST(zero_page_detection) {
  size_t page = PageSize();
  std::vector<uint8_t> buf(page, 0);
  CHECK(IsZeroPage(buf.data(), page));
  buf[page - 1] = 1;
  CHECK(!IsZeroPage(buf.data(), page));
  buf[page - 1] = 0;
  buf[0] = 0x80;
  CHECK(!IsZeroPage(buf.data(), page));
}

TEST(reclaim_drops_resident_zero_pages_and_keeps_the_rest) {
  size_t page = PageSize();
  int err = 0;
  size_t pages = 16;
  auto* p = static_cast<uint8_t*>(MapAnonymous(pages * page, HugePages::kNever, &err));
  // pages 0..7: written then zeroed (resident, zero); 8..11: data; 12..15: never touched.
  for (size_t i = 0; i < 12; i++) std::memset(p + i * page, 0x33 + static_cast<int>(i), page);
  for (size_t i = 0; i < 8; i++) std::memset(p + i * page, 0, page);
  CHECK_EQ(OwnedPages(p, pages * page, page), 12L);
  ZeroReclaim r = ReclaimZeroPages(p, pages * page, page);
  CHECK_EQ(r.error, 0);
  CHECK_EQ(r.zero_pages, size_t{12});
  CHECK_EQ(r.reclaimed_pages, size_t{8});
  CHECK_EQ(OwnedPages(p, pages * page, page), 4L);
  // Reads map the zero page; a kernel that gives read faults fresh pages (pvm_no_zero_page=1) owns them again.
  for (size_t i = 0; i < 8; i++) CHECK(IsZeroPage(p + i * page, page));
  CHECK_EQ(OwnedPages(p, pages * page, page), pagefuse_test::ReadFaultMapsZeroPage() ? 4L : 12L);
  for (size_t i = 8; i < 12; i++) {
    for (size_t b = 0; b < page; b++) CHECK(p[i * page + b] == 0x33 + i);
  }
  for (size_t i = 0; i < 8; i++) CHECK(IsZeroPage(p + i * page, page));
  Mapping* m = new Mapping(p, pages * page);
  m->Unref();
}

TEST_MAIN()
