// Child processes for multi-process tests: start a program with its output in a file, wait for
// a set of them against a time limit, and never leave one running (each child leads its own
// process group, which is killed when the handle goes away or the limit passes).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace incept::testing {

class Subprocess {
 public:
  // Starts argv[0] (a path) with argv; stdout and stderr go to `log`; `env` is added to (and
  // overrides) this process's environment; `unset` names variables the child must not see.
  Subprocess(const std::vector<std::string>& argv, const std::filesystem::path& log,
             const std::map<std::string, std::string>& env = {}, const std::vector<std::string>& unset = {});
  ~Subprocess();  // kills the child's process group if it still runs
  Subprocess(Subprocess&& o) noexcept;
  Subprocess& operator=(Subprocess&&) = delete;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exited_; }
  // Reaps the child if it has ended; true once it has.
  bool poll();
  // SIGTERM, then SIGKILL after `grace_s`, to the child's whole process group; reaps it.
  void kill_group(double grace_s = 1.0);

  bool exited() const { return exited_; }
  int exit_code() const { return exit_code_; }   // -1 unless it exited normally
  int term_signal() const { return signal_; }    // 0 unless a signal ended it
  double end_seconds() const { return end_s_; }  // when it ended, seconds since the test's clock start
  std::string log() const;                       // its output so far

 private:
  pid_t pid_ = -1;
  std::filesystem::path log_;
  bool exited_ = false;
  int exit_code_ = -1, signal_ = 0;
  double end_s_ = -1;
};

// Seconds on a monotonic clock shared by every Subprocess (for end_seconds()).
double test_clock_s();

// Polls until every child has ended or `limit_s` has passed; then kills the rest. Returns true
// when all ended by themselves.
bool wait_all(std::vector<Subprocess>& procs, double limit_s);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back, close).
int free_local_port();

}  // namespace incept::testing
