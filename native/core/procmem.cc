#include "core/procmem.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "core/mapping.h"

namespace pagefuse {

namespace {

constexpr uint64_t kPresent = 1ull << 63;
constexpr uint64_t kExclusive = 1ull << 56;
constexpr uint64_t kPfnMask = (1ull << 55) - 1;
constexpr uint64_t kKpfThp = 1ull << 22;
constexpr uint64_t kKpfZeroPage = 1ull << 24;
constexpr size_t kIovMax = 1024;

int OpenErr(int err) {
  if (err == ENOENT) return ESRCH;
  if (err == EACCES) return EPERM;
  return err;
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

bool HasFlag(const char* flags, const char* flag) {
  for (const char* p = flags; *p != '\0';) {
    while (*p == ' ') p++;
    if (p[0] == flag[0] && p[1] == flag[1] && (p[2] == ' ' || p[2] == '\n' || p[2] == '\0')) return true;
    while (*p != ' ' && *p != '\0') p++;
  }
  return false;
}

ssize_t PreadFull(int fd, void* buf, size_t len, off_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, static_cast<char*>(buf) + done, len - done, off + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

}  // namespace

int ReadAnonMappings(const std::string& procRoot, pid_t pid, bool mergeableOnly, std::vector<AnonMapping>* out) {
  std::string path = procRoot + "/" + std::to_string(pid) + "/smaps";
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "re"));
  if (!f) return OpenErr(errno);
  out->clear();
  // Whole lines, however long: a mapped file's path may be PATH_MAX long, and a line cut at a fixed size
  // would start the next read mid-path, where the process's owner chose what the "line" says.
  char* buf = nullptr;
  size_t cap = 0;
  bool candidate = false;
  AnonMapping cur{};
  bool any = false;
  while (getline(&buf, &cap, f.get()) >= 0) {
    const char* line = buf;
    unsigned long long start = 0, end = 0, offset = 0, inode = 0;
    char perms[8] = {0};
    char dev[32] = {0};
    int pathPos = 0;
    if (std::sscanf(line, "%llx-%llx %7s %llx %31s %llu %n", &start, &end, perms, &offset, dev, &inode, &pathPos) >= 6 &&
        std::strchr(line, '-') != nullptr && line[0] != 'V') {
      any = true;
      const char* name = line + pathPos;
      bool named = name[0] != '\0' && name[0] != '\n';
      // Anonymous: no file behind it. [heap], [stack] and prctl-named "[anon:…]" count; [vdso] etc. do not.
      bool anonName = !named || std::strncmp(name, "[heap]", 6) == 0 || std::strncmp(name, "[stack", 6) == 0 ||
                      std::strncmp(name, "[anon:", 6) == 0;
      candidate = inode == 0 && perms[3] == 'p' && anonName;
      cur = AnonMapping{start, end, false, false};
      continue;
    }
    if (std::strncmp(line, "VmFlags:", 8) == 0 && candidate) {
      const char* flags = line + 8;
      cur.mergeable = HasFlag(flags, "mg");
      cur.hugepage = HasFlag(flags, "hg");
      // Mappings the kernel never merges: I/O and raw PFN mappings, and memory that cannot be read.
      bool special = HasFlag(flags, "io") || HasFlag(flags, "pf") || HasFlag(flags, "dd");
      bool readable = HasFlag(flags, "rd");
      if (!special && readable && (!mergeableOnly || cur.mergeable)) out->push_back(cur);
      candidate = false;
    }
  }
  std::free(buf);
  if (std::ferror(f.get())) return errno != 0 ? OpenErr(errno) : EIO;
  // A process that exited between open and read leaves an empty smaps.
  if (!any) {
    std::string stat = procRoot + "/" + std::to_string(pid) + "/stat";
    if (access(stat.c_str(), F_OK) != 0) return ESRCH;
  }
  return 0;
}

namespace {

// PAGEMAP_SCAN (Linux 6.7), declared here for headers that predate it (<linux/fs.h>'s layout).
struct PmPageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};
struct PmScanArg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walkEnd;
  uint64_t vec;
  uint64_t vecLen;
  uint64_t maxPages;
  uint64_t categoryInverted;
  uint64_t categoryMask;
  uint64_t categoryAnyofMask;
  uint64_t returnMask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kPageIsPresent = 1ull << 3;
constexpr size_t kScanRegions = 512;        // present ranges asked for per PAGEMAP_SCAN call
constexpr uint64_t kWindowEntries = 65536;  // pagemap entries per read (512 KiB, 256 MiB of address space)
// Present ranges closer than this (in pages) are read as one: the gap's entries cost less than a call.
constexpr uint64_t kGapPages = 512;

// Reads pagemap (and kpageflags) entries over address ranges and sorts their pages into `out`.
class EntryWalk {
 public:
  EntryWalk(int pm, int kpf, ResidentScan* out, const std::atomic<bool>* cancel)
      : pm_(pm), kpf_(kpf), out_(out), cancel_(cancel) {}

  bool Cancelled() const { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); }

  // The pages of [start, end), one window of entries at a time; the cancel flag is looked at between windows.
  int Read(uint64_t start, uint64_t end);

  bool sawPfn = false;

 private:
  int pm_;
  int kpf_;
  ResidentScan* out_;
  const std::atomic<bool>* cancel_;
  const uint64_t page_ = PageSize();
  std::vector<uint64_t> entries_;
  std::vector<uint64_t> flags_;
  uint64_t zeroPfn_ = ~0ull;
};

int EntryWalk::Read(uint64_t start, uint64_t end) {
  for (uint64_t addr = start; addr < end;) {
    if (Cancelled()) return ECANCELED;
    uint64_t n = (end - addr) / page_;
    if (n > kWindowEntries) n = kWindowEntries;
    entries_.resize(n);
    ssize_t got = PreadFull(pm_, entries_.data(), n * 8, static_cast<off_t>(addr / page_ * 8));
    if (got < 0) {
      if (errno == ESRCH || errno == EACCES || errno == EPERM) return errno == EACCES ? EPERM : errno;
      got = 0;
    }
    out_->entriesRead += n;
    size_t have = static_cast<size_t>(got) / 8;
    // Page flags by PFN (root only: without CAP_SYS_ADMIN the PFNs read as zero).
    flags_.assign(have, 0);
    if (kpf_ >= 0) {
      // One read per run of consecutive frames (a huge page is 512 of them); the shared zero page
      // recurs, so its frame is remembered.
      for (size_t i = 0; i < have;) {
        uint64_t pfn = entries_[i] & kPfnMask;
        if (!(entries_[i] & kPresent) || pfn == 0) {
          i++;
          continue;
        }
        sawPfn = true;
        if (pfn == zeroPfn_) {
          flags_[i++] = kKpfZeroPage;
          continue;
        }
        size_t j = i + 1;
        while (j < have && (entries_[j] & kPresent) && (entries_[j] & kPfnMask) == pfn + (j - i) && j - i < 4096) j++;
        if (PreadFull(kpf_, &flags_[i], (j - i) * 8, static_cast<off_t>(pfn * 8)) != static_cast<ssize_t>((j - i) * 8)) {
          std::fill(flags_.begin() + i, flags_.begin() + j, 0);
        }
        if (j == i + 1 && (flags_[i] & kKpfZeroPage)) zeroPfn_ = pfn;
        i = j;
      }
    }
    for (size_t i = 0; i < n; i++) {
      uint64_t a = addr + i * page_;
      if (i >= have || !(entries_[i] & kPresent)) {
        out_->absentPages++;
        continue;
      }
      if (flags_[i] & kKpfZeroPage) {
        out_->zeroMappedPages++;
        continue;
      }
      bool thp = (flags_[i] & kKpfThp) != 0;
      bool shared = !(entries_[i] & kExclusive);
      if (!out_->runs.empty()) {
        PageRun& last = out_->runs.back();
        if (last.address + last.pages * page_ == a && last.thp == thp && last.shared == shared) {
          last.pages++;
          continue;
        }
      }
      out_->runs.push_back(PageRun{a, 1, thp, shared});
    }
    addr += n * page_;
  }
  return 0;
}

}  // namespace

int ReadResidentPages(const std::string& procRoot, pid_t pid, const std::vector<AnonMapping>& maps, ResidentScan* out,
                      const std::atomic<bool>* cancel) {
  const uint64_t page = PageSize();
  std::string path = procRoot + "/" + std::to_string(pid) + "/pagemap";
  Fd pm(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (pm.get() < 0) return OpenErr(errno);
  Fd kpf(open((procRoot + "/kpageflags").c_str(), O_RDONLY | O_CLOEXEC));
  out->runs.clear();
  out->flagsKnown = false;
  EntryWalk walk(pm.get(), kpf.get(), out, cancel);
  // PAGEMAP_SCAN lists the present ranges, walking page tables: address space with nothing mapped costs
  // next to nothing, where reading its pagemap entries costs 8 bytes per page (0.75 s per TiB measured).
  // Pages outside the ranges it lists are absent; the entries of the ranges are read as before. Without
  // it (before 6.7, or a fixture procRoot whose pagemap is a plain file) every entry is read.
  bool scanPresent = true;
  std::vector<std::pair<uint64_t, uint64_t>> present;
  for (const AnonMapping& m : maps) {
    if (walk.Cancelled()) return ECANCELED;
    uint64_t done = m.start;  // below it, pages were read or counted absent
    uint64_t spanStart = 0, spanEnd = 0;
    auto flush = [&]() -> int {
      if (spanEnd == spanStart) return 0;
      out->absentPages += (spanStart - done) / page;
      done = spanEnd;
      int err = walk.Read(spanStart, spanEnd);
      spanStart = spanEnd = 0;
      return err;
    };
    for (uint64_t at = m.start; scanPresent && at < m.end;) {
      if (walk.Cancelled()) return ECANCELED;
      uint64_t walkEnd = 0;
      int err = PagemapPresent(pm.get(), at, m.end, 0, &present, &walkEnd);
      // ESRCH: the process exited since pagemap was opened (a read then returned nothing: all absent).
      if (err == ESRCH || err == EPERM) return err;
      if (err != 0) {
        scanPresent = false;  // not supported here (ENOTTY, EINVAL): read every entry from `done` on
        break;
      }
      // Ranges of successive calls closer than kGapPages are read as one too.
      for (const auto& [lo, hi] : present) {
        if (spanEnd != spanStart && lo <= spanEnd + kGapPages * page) {
          spanEnd = std::max(spanEnd, hi);
          continue;
        }
        if (int e = flush()) return e;
        spanStart = lo;
        spanEnd = hi;
      }
      at = walkEnd;
    }
    if (int err = flush()) return err;
    if (!scanPresent) {
      if (int err = walk.Read(done, m.end)) return err;
      done = m.end;
    }
    out->absentPages += (m.end - done) / page;
  }
  out->flagsKnown = kpf.get() >= 0 && walk.sawPfn;
  return 0;
}

int PagemapPresent(int pm, uint64_t start, uint64_t end, uint64_t maxPages, std::vector<std::pair<uint64_t, uint64_t>>* out,
                   uint64_t* walkEnd) {
  const uint64_t page = PageSize();
  thread_local std::vector<PmPageRegion> regions(kScanRegions);  // one per thread, not one per call
  out->clear();
  for (;;) {
    PmScanArg arg{};
    arg.size = sizeof arg;
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uintptr_t>(regions.data());
    arg.vecLen = regions.size();
    arg.maxPages = maxPages;
    arg.categoryMask = kPageIsPresent;
    arg.returnMask = kPageIsPresent;
    int n = ioctl(pm, kPagemapScan, &arg);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EACCES ? EPERM : errno;
    if (arg.walkEnd <= start || arg.walkEnd > end) return EINVAL;
    for (int i = 0; i < n; i++) {
      const PmPageRegion& r = regions[static_cast<size_t>(i)];
      uint64_t lo = std::max(r.start, start), hi = std::min(r.end, end);
      if (lo >= hi) continue;
      if (!out->empty() && lo <= out->back().second + kGapPages * page) {
        out->back().second = std::max(out->back().second, hi);
      } else {
        out->emplace_back(lo, hi);
      }
    }
    *walkEnd = arg.walkEnd;
    return 0;
  }
}

int ReadRemote(pid_t pid, const uint64_t* addresses, const uint64_t* lengths, size_t count, unsigned char* dst,
               std::vector<bool>* failed, const bool* viaMem) {
  failed->assign(count, false);
  std::vector<iovec> remote(count < kIovMax ? count : kIovMax);
  size_t i = 0;
  unsigned char* out = dst;
  std::optional<Fd> mem;
  while (i < count) {
    if (viaMem != nullptr && viaMem[i]) {
      if (!mem) {
        mem.emplace(open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
        if (mem->get() < 0) return OpenErr(errno);
      }
      ssize_t got = PreadFull(mem->get(), out, lengths[i], static_cast<off_t>(addresses[i]));
      if (got != static_cast<ssize_t>(lengths[i])) {
        // The process exited (reads then return 0 or ESRCH), or the range went away.
        if (got < 0 && errno == ESRCH) return ESRCH;
        std::memset(out, 0, lengths[i]);
        (*failed)[i] = true;
      }
      out += lengths[i];
      i++;
      continue;
    }
    size_t n = 0;
    while (i + n < count && n < kIovMax && !(viaMem != nullptr && viaMem[i + n])) n++;
    size_t total = 0;
    for (size_t j = 0; j < n; j++) {
      remote[j].iov_base = reinterpret_cast<void*>(addresses[i + j]);
      remote[j].iov_len = lengths[i + j];
      total += lengths[i + j];
    }
    iovec local{out, total};
    ssize_t got = process_vm_readv(pid, &local, 1, remote.data(), n, 0);
    if (got < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == ESRCH || err == EPERM) return err;
      got = 0;  // EFAULT/ENOMEM on the first range: fall through to skip it
    }
    // Partial reads stop at the first range that failed: skip it and go on with the rest.
    size_t done = static_cast<size_t>(got);
    size_t j = 0;
    while (j < n && done >= lengths[i + j]) {
      done -= lengths[i + j];
      out += lengths[i + j];
      j++;
    }
    if (j < n) {
      std::memset(out, 0, lengths[i + j]);
      (*failed)[i + j] = true;
      out += lengths[i + j];
      j++;
    }
    i += j;
  }
  return 0;
}

}  // namespace pagefuse
