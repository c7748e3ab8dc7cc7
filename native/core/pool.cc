#include "core/pool.h"

#include <sched.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

namespace pagefuse {

namespace {

class Pool {
 public:
  // Every task gets a thread at once (concurrent scans must not wait on each other), up to 64.
  void Submit(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
    if (idle_ < queue_.size() && threads_ < 64) {
      threads_++;
      std::thread([this] { Loop(); }).detach();  // lives as long as the process, idle on cv_
    }
    cv_.notify_one();
  }

 private:
  void Loop() {
    // Hashing is batch work: SCHED_BATCH keeps the same CPU share but lets an interactive thread
    // that wakes up (Node's event loop on the same CPUs) preempt it at once.
    sched_param param{};
    param.sched_priority = 0;
    sched_setscheduler(0, SCHED_BATCH, &param);
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        idle_++;
        cv_.wait(lock, [this] { return !queue_.empty(); });
        idle_--;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t idle_ = 0;
  int threads_ = 0;
};

Pool& ThePool() {
  static Pool* pool = new Pool();  // never destroyed: detached threads may still wait on it at exit
  return *pool;
}

}  // namespace

int DefaultThreads() {
  cpu_set_t set;
  int n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  return n < 8 ? n : 8;
}

void ParallelRun(int threads, const std::function<void(int)>& fn) {
  // Every share runs on a pool thread, the caller (a libuv worker) only waits: all hashing then
  // runs at the pool's batch scheduling class. The join state is shared with every task, so a pool
  // thread still inside its last unlock never touches a mutex the returning caller has destroyed.
  struct Join {
    std::mutex mu;
    std::condition_variable cv;
    int remaining;
  };
  const int n = threads < 1 ? 1 : threads;
  auto join = std::make_shared<Join>();
  join->remaining = n;
  for (int i = 0; i < n; i++) {
    ThePool().Submit([join, &fn, i] {
      fn(i);
      std::lock_guard<std::mutex> lock(join->mu);
      if (--join->remaining == 0) join->cv.notify_one();
    });
  }
  std::unique_lock<std::mutex> lock(join->mu);
  join->cv.wait(lock, [&] { return join->remaining == 0; });
}

}  // namespace pagefuse
