#include "core/procmem.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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
  char line[4096];
  bool candidate = false;
  AnonMapping cur{};
  bool any = false;
  while (std::fgets(line, sizeof line, f.get()) != nullptr) {
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
  if (std::ferror(f.get())) return errno != 0 ? OpenErr(errno) : EIO;
  // A process that exited between open and read leaves an empty smaps.
  if (!any) {
    std::string stat = procRoot + "/" + std::to_string(pid) + "/stat";
    if (access(stat.c_str(), F_OK) != 0) return ESRCH;
  }
  return 0;
}

int ReadResidentPages(const std::string& procRoot, pid_t pid, const std::vector<AnonMapping>& maps, ResidentScan* out) {
  const uint64_t page = PageSize();
  std::string path = procRoot + "/" + std::to_string(pid) + "/pagemap";
  Fd pm(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (pm.get() < 0) return OpenErr(errno);
  Fd kpf(open((procRoot + "/kpageflags").c_str(), O_RDONLY | O_CLOEXEC));
  out->runs.clear();
  out->flagsKnown = false;
  std::vector<uint64_t> entries;
  std::vector<uint64_t> flags;
  bool sawPfn = false;
  uint64_t zeroPfn = ~0ull;
  for (const AnonMapping& m : maps) {
    for (uint64_t addr = m.start; addr < m.end;) {
      uint64_t n = (m.end - addr) / page;
      if (n > 65536) n = 65536;
      entries.resize(n);
      ssize_t got = PreadFull(pm.get(), entries.data(), n * 8, static_cast<off_t>(addr / page * 8));
      if (got < 0) {
        if (errno == ESRCH || errno == EACCES || errno == EPERM) return errno == EACCES ? EPERM : errno;
        got = 0;
      }
      size_t have = static_cast<size_t>(got) / 8;
      // Page flags by PFN (root only: without CAP_SYS_ADMIN the PFNs read as zero).
      flags.assign(have, 0);
      if (kpf.get() >= 0) {
        // One read per run of consecutive frames (a huge page is 512 of them); the shared zero page
        // recurs, so its frame is remembered.
        for (size_t i = 0; i < have;) {
          uint64_t pfn = entries[i] & kPfnMask;
          if (!(entries[i] & kPresent) || pfn == 0) {
            i++;
            continue;
          }
          sawPfn = true;
          if (pfn == zeroPfn) {
            flags[i++] = kKpfZeroPage;
            continue;
          }
          size_t j = i + 1;
          while (j < have && (entries[j] & kPresent) && (entries[j] & kPfnMask) == pfn + (j - i) && j - i < 4096) j++;
          if (PreadFull(kpf.get(), &flags[i], (j - i) * 8, static_cast<off_t>(pfn * 8)) != static_cast<ssize_t>((j - i) * 8)) {
            std::fill(flags.begin() + i, flags.begin() + j, 0);
          }
          if (j == i + 1 && (flags[i] & kKpfZeroPage)) zeroPfn = pfn;
          i = j;
        }
      }
      for (size_t i = 0; i < n; i++) {
        uint64_t a = addr + i * page;
        if (i >= have || !(entries[i] & kPresent)) {
          out->absentPages++;
          continue;
        }
        if (flags[i] & kKpfZeroPage) {
          out->zeroMappedPages++;
          continue;
        }
        bool thp = (flags[i] & kKpfThp) != 0;
        bool shared = !(entries[i] & kExclusive);
        if (!out->runs.empty()) {
          PageRun& last = out->runs.back();
          if (last.address + last.pages * page == a && last.thp == thp && last.shared == shared) {
            last.pages++;
            continue;
          }
        }
        out->runs.push_back(PageRun{a, 1, thp, shared});
      }
      addr += n * page;
    }
  }
  out->flagsKnown = kpf.get() >= 0 && sawPfn;
  return 0;
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
