// pagefuse-exec: applies KSM's whole-process merge flag, a NUMA memory policy and a CPU affinity to
// itself, then execs the command, which inherits all three. No Node inside, so a VMM started through
// it carries nothing of pagefuse but those settings.
//
// Exit statuses as a shell gives them: 127 command not found, 126 found but not executable,
// 2 bad usage; 125 when a setting could not be applied (as env(1) and timeout(1) do).
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/numa.h"
#include "core/process.h"

using pagefuse::MemPolicyMode;
using pagefuse::NumaApi;
using pagefuse::NumaTopology;

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailed = 125;
constexpr int kExitNotExecutable = 126;
constexpr int kExitNotFound = 127;

const char kUsage[] =
    "usage: pagefuse-exec [--merge] [--node N | --membind LIST | --preferred N | --interleave LIST]\n"
    "                     [--cpunodebind LIST] [--check] -- COMMAND [ARGS...]\n"
    "\n"
    "  --merge              prctl(PR_SET_MEMORY_MERGE, 1): KSM may merge all of the command's memory\n"
    "  --node N             memory and CPUs of node N (--membind N --cpunodebind N)\n"
    "  -m, --membind LIST   allocate only on these nodes (MPOL_BIND)\n"
    "  -N, --cpunodebind LIST  run only on the CPUs of these nodes\n"
    "  -p, --preferred N    allocate on node N first (MPOL_PREFERRED)\n"
    "  -i, --interleave LIST  interleave allocations over these nodes (MPOL_INTERLEAVE)\n"
    "  --check              apply and check everything, then exit 0 instead of running a command\n"
    "LIST is as numactl spells it: 0-3,5 or all.\n";

struct Options {
  bool merge = false;
  bool check = false;
  bool probeMerge = false;
  MemPolicyMode mode = MemPolicyMode::kDefault;
  const char* modeFlag = nullptr;
  std::string memNodes;
  const char* cpuFlag = nullptr;
  std::string cpuNodes;
  char** command = nullptr;
};

[[noreturn]] void Fail(int status, const std::string& message) {
  std::fprintf(stderr, "pagefuse-exec: %s\n", message.c_str());
  std::exit(status);
}

std::string KernelRelease() {
  utsname u{};
  return uname(&u) == 0 ? u.release : "unknown";
}

// Matches "--name VALUE", "--name=VALUE" and the numactl short form "-x VALUE".
bool TakeValue(char** argv, int* i, const char* name, const char* shortName, std::string* value) {
  std::string arg = argv[*i];
  std::string longName = std::string("--") + name;
  if (arg == longName || (shortName != nullptr && arg == shortName)) {
    if (argv[*i + 1] == nullptr || std::strcmp(argv[*i + 1], "--") == 0) Fail(kExitUsage, arg + " needs a value");
    *value = argv[++*i];
    return true;
  }
  if (arg.compare(0, longName.size() + 1, longName + "=") == 0) {
    *value = arg.substr(longName.size() + 1);
    return true;
  }
  return false;
}

void SetMemoryMode(Options* o, MemPolicyMode mode, const char* flag, const std::string& nodes) {
  if (o->modeFlag != nullptr) Fail(kExitUsage, std::string(flag) + " and " + o->modeFlag + " cannot be combined");
  o->mode = mode;
  o->modeFlag = flag;
  o->memNodes = nodes;
}

void SetCpuNodes(Options* o, const char* flag, const std::string& nodes) {
  if (o->cpuFlag != nullptr) Fail(kExitUsage, std::string(flag) + " and " + o->cpuFlag + " cannot be combined");
  o->cpuFlag = flag;
  o->cpuNodes = nodes;
}

Options Parse(char** argv) {
  Options o;
  int i = 1;
  for (; argv[i] != nullptr; i++) {
    std::string arg = argv[i];
    std::string value;
    if (arg == "--") {
      o.command = argv + i + 1;
      break;
    }
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--merge") {
      o.merge = true;
    } else if (arg == "--check") {
      o.check = true;
    } else if (arg == "--probe-merge") {
      o.probeMerge = true;
    } else if (TakeValue(argv, &i, "node", nullptr, &value)) {
      SetMemoryMode(&o, MemPolicyMode::kBind, "--node", value);
      SetCpuNodes(&o, "--node", value);
    } else if (TakeValue(argv, &i, "membind", "-m", &value)) {
      SetMemoryMode(&o, MemPolicyMode::kBind, "--membind", value);
    } else if (TakeValue(argv, &i, "preferred", "-p", &value)) {
      SetMemoryMode(&o, MemPolicyMode::kPreferred, "--preferred", value);
    } else if (TakeValue(argv, &i, "interleave", "-i", &value)) {
      SetMemoryMode(&o, MemPolicyMode::kInterleave, "--interleave", value);
    } else if (TakeValue(argv, &i, "cpunodebind", "-N", &value)) {
      SetCpuNodes(&o, "--cpunodebind", value);
    } else if (arg.empty() || arg[0] != '-') {
      Fail(kExitUsage, "missing '--' before the command '" + arg + "'");
    } else {
      Fail(kExitUsage, "unknown option '" + arg + "'; run 'pagefuse-exec --help'");
    }
  }
  if (o.probeMerge) return o;
  if (o.check) {
    if (o.command != nullptr && o.command[0] != nullptr) Fail(kExitUsage, "--check runs no command");
    return o;
  }
  if (o.command == nullptr) Fail(kExitUsage, "missing '--' before the command");
  if (o.command[0] == nullptr) Fail(kExitUsage, "missing the command after '--'");
  return o;
}

// A numactl node list ("0-2,4" or "all") checked against the host.
std::vector<int> Nodes(const NumaTopology& t, const char* flag, const std::string& text, bool memory, bool cpus,
                       bool single) {
  std::vector<int> nodes;
  if (text == "all") {
    for (const pagefuse::NumaNode& n : t.nodes) {
      if ((!memory || n.memTotal > 0) && (!cpus || !n.cpus.empty())) nodes.push_back(n.id);
    }
  } else if (!pagefuse::ParseIdList(text, &nodes)) {
    Fail(kExitUsage, std::string(flag) + " '" + text + "' is not a node list such as 0-3,5 or all");
  }
  if (single && nodes.size() != 1) Fail(kExitUsage, std::string(flag) + " takes one node, got '" + text + "'");
  std::string why = pagefuse::CheckNodes(t, nodes, memory, cpus);
  if (!why.empty()) Fail(kExitUsage, std::string(flag) + " " + text + ": " + why);
  return nodes;
}

void ApplyNuma(const Options& o) {
  if (o.modeFlag == nullptr && o.cpuFlag == nullptr) return;
  const NumaApi& api = NumaApi::Default();
  NumaTopology t;
  std::string failed;
  int err = api.read_topology(&t, &failed);
  if (err != 0) Fail(kExitFailed, "reading the NUMA topology (" + failed + "): " + std::strerror(err));
  if (o.modeFlag != nullptr) {
    bool single = o.mode == MemPolicyMode::kPreferred || std::strcmp(o.modeFlag, "--node") == 0;
    std::vector<int> nodes = Nodes(t, o.modeFlag, o.memNodes, true, false, single);
    err = pagefuse::SetProcessPolicy(api, o.mode, nodes);
    if (err != 0) Fail(kExitFailed, std::string("set_mempolicy for ") + o.modeFlag + " " + o.memNodes + ": " + std::strerror(err));
  }
  if (o.cpuFlag != nullptr) {
    std::vector<int> nodes = Nodes(t, o.cpuFlag, o.cpuNodes, false, true, false);
    err = pagefuse::BindCpusToNodes(t, nodes);
    if (err != 0) Fail(kExitFailed, std::string("sched_setaffinity for ") + o.cpuFlag + " " + o.cpuNodes + ": " + std::strerror(err));
  }
}

// Kernels before 6.7 clear the merge flag at execve: run this binary once more through execve and
// ask it whether the flag is still set, rather than trusting a version number.
void CheckMergeSurvivesExec() {
  pid_t pid = fork();
  if (pid < 0) Fail(kExitFailed, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    execl("/proc/self/exe", "pagefuse-exec", "--probe-merge", static_cast<char*>(nullptr));
    _exit(kExitNotExecutable);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) Fail(kExitFailed, std::string("waitpid: ") + std::strerror(errno));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
    Fail(kExitFailed, "--merge: this kernel (" + KernelRelease() +
                          ") clears PR_SET_MEMORY_MERGE at execve, so the command would not be merged; "
                          "Linux 6.7 or newer keeps it");
  }
  Fail(kExitFailed, "--merge: could not check that the merge flag survives execve (probe status " +
                        std::to_string(status) + ")");
}

void ApplyMerge(const Options& o) {
  if (!o.merge) return;
  int err = pagefuse::SetMemoryMerge(true);
  if (err == EINVAL) {
    Fail(kExitFailed, "--merge: this kernel (" + KernelRelease() +
                          ") has no PR_SET_MEMORY_MERGE; it needs Linux 6.4 or newer built with CONFIG_KSM");
  }
  if (err != 0) Fail(kExitFailed, std::string("--merge: prctl(PR_SET_MEMORY_MERGE, 1): ") + std::strerror(err));
  CheckMergeSurvivesExec();
}

[[noreturn]] void Exec(char** command) {
  execvp(command[0], command);
  int err = errno;
  std::string name = command[0];
  bool path = name.find('/') != std::string::npos;
  if (err == ENOENT || err == ENOTDIR) {
    Fail(kExitNotFound, name + ": " + (path ? "No such file or directory" : "command not found"));
  }
  Fail(kExitNotExecutable, name + ": " + std::strerror(err));
}

}  // namespace

int main(int argc, char** argv) {
  (void)argc;
  Options o = Parse(argv);
  if (o.probeMerge) return pagefuse::GetMemoryMerge() == 1 ? 0 : 1;
  ApplyNuma(o);
  ApplyMerge(o);
  if (o.check) return 0;
  Exec(o.command);
}
