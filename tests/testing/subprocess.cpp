// Child processes for multi-process tests (subprocess.h).
#include "testing/subprocess.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace incept::testing {

double test_clock_s() {
  static const auto start = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Subprocess::Subprocess(const std::vector<std::string>& argv, const std::filesystem::path& log,
                       const std::map<std::string, std::string>& env, const std::vector<std::string>& unset)
    : log_(log) {
  test_clock_s();
  // Everything the child needs is built before fork (only exec-safe calls after it).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string kv(*e);
    const std::string key = kv.substr(0, kv.find('='));
    bool drop = env.count(key) > 0;
    for (const auto& u : unset) drop = drop || u == key;
    if (!drop) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + log.string());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setpgid(0, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(args[0], args.data(), envp.data());
    const char msg[] = "exec failed\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  ::close(fd);
  if (pid_ < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  ::setpgid(pid_, pid_);  // also from the parent, so kill_group works even before the child runs
}

Subprocess::Subprocess(Subprocess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      log_(std::move(o.log_)),
      exited_(o.exited_),
      exit_code_(o.exit_code_),
      signal_(o.signal_),
      end_s_(o.end_s_) {}

Subprocess::~Subprocess() {
  if (pid_ > 0) kill_group(0.5);
}

bool Subprocess::poll() {
  if (pid_ <= 0 || exited_) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
  exited_ = true;
  end_s_ = test_clock_s();
  if (WIFEXITED(status)) exit_code_ = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) signal_ = WTERMSIG(status);
  return true;
}

void Subprocess::kill_group(double grace_s) {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGTERM);
  const double until = test_clock_s() + grace_s;
  while (!poll() && test_clock_s() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::kill(-pid_, SIGKILL);  // the child's group: also whatever it started (mpirun's ranks)
  if (!exited_) {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    end_s_ = test_clock_s();
    signal_ = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
}

std::string Subprocess::log() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool wait_all(std::vector<Subprocess>& procs, double limit_s) {
  const double until = test_clock_s() + limit_s;
  for (;;) {
    bool all = true;
    for (auto& p : procs) all = p.poll() && all;
    if (all) return true;
    if (test_clock_s() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& p : procs) p.kill_group(0.5);
  return false;
}

int free_local_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(s);
    throw std::runtime_error("no free port on 127.0.0.1");
  }
  ::close(s);
  return ntohs(a.sin_port);
}

}  // namespace incept::testing
