// Test HTTP servers (http_server.h).
#include "testing/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace incept::testing {
namespace fs = std::filesystem;
namespace {

// Starts argv with stdout+stderr into a pipe; returns pid and the read end.
int spawn(const std::vector<std::string>& argv, int* read_fd) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const int pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    setpgid(0, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  *read_fd = fds[0];
  return pid;
}

// Reads the child's output until a line contains `marker` followed by a port number.
int wait_for_port(int fd, const std::string& marker, double timeout_s, std::string* log) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::string buf;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char tmp[512];
    const ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) break;
    buf.append(tmp, std::size_t(n));
    const auto at = buf.find(marker);
    if (at != std::string::npos) {
      std::size_t i = at + marker.size();
      int port = 0;
      while (i < buf.size() && std::isdigit(static_cast<unsigned char>(buf[i])))
        port = port * 10 + (buf[i++] - '0');
      if (i < buf.size() && port > 0) return port;
    }
  }
  *log = buf;
  return 0;
}

int free_port() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

bool can_connect(int port) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(std::uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(s);
  return ok;
}

void drain_in_background(int fd) {
  std::thread([fd] {
    char tmp[4096];
    while (read(fd, tmp, sizeof tmp) > 0) {
    }
    close(fd);
  }).detach();
}

}  // namespace

HttpServer HttpServer::python(const fs::path& dir) {
  HttpServer s;
  int fd;
  s.pid_ = spawn(
      {"python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", dir.string()}, &fd);
  std::string log;
  s.port_ = wait_for_port(fd, " port ", 20, &log);
  if (!s.port_) throw std::runtime_error("python3 -m http.server did not start: " + log);
  drain_in_background(fd);
  return s;
}

HttpServer HttpServer::script(const fs::path& script, const std::vector<std::string>& args) {
  HttpServer s;
  std::vector<std::string> argv{"python3", "-u", script.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  int fd;
  s.pid_ = spawn(argv, &fd);
  std::string log;
  s.port_ = wait_for_port(fd, "PORT ", 20, &log);
  if (!s.port_) throw std::runtime_error("server script " + script.string() + " did not start: " + log);
  drain_in_background(fd);
  return s;
}

HttpServer HttpServer::nginx(const fs::path& dir) {
  HttpServer s;
  static int counter = 0;
  s.temp_ = fs::temp_directory_path() /
            ("incept_nginx_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(s.temp_ / "logs");
  for (int attempt = 0; attempt < 5 && !s.port_; ++attempt) {
    const int port = free_port();
    const fs::path conf = s.temp_ / "nginx.conf";
    std::ofstream(conf) << "worker_processes 2;\n"
                        << "pid " << (s.temp_ / "nginx.pid").string() << ";\n"
                        << "error_log " << (s.temp_ / "logs/error.log").string() << " warn;\n"
                        << (geteuid() == 0 ? "user root;\n" : "") << "events { worker_connections 1024; }\n"
                        << "http {\n  access_log off;\n  sendfile on;\n  keepalive_requests 100000;\n"
                        << "  client_body_temp_path " << (s.temp_ / "body").string() << ";\n"
                        << "  proxy_temp_path " << (s.temp_ / "proxy").string() << ";\n"
                        << "  fastcgi_temp_path " << (s.temp_ / "fastcgi").string() << ";\n"
                        << "  uwsgi_temp_path " << (s.temp_ / "uwsgi").string() << ";\n"
                        << "  scgi_temp_path " << (s.temp_ / "scgi").string() << ";\n"
                        << "  types { image/jpeg jpg jpeg; image/png png; image/bmp bmp; text/html html; }\n"
                        << "  server {\n    listen 127.0.0.1:" << port << ";\n    root " << dir.string()
                        << ";\n"
                        << "    location / { autoindex on; }\n  }\n}\n";
    int fd;
    s.pid_ = spawn({fs::exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx", "-p", s.temp_.string(), "-e",
                    (s.temp_ / "logs/error.log").string(), "-c", conf.string(), "-g", "daemon off;"},
                   &fd);
    drain_in_background(fd);
    for (int i = 0; i < 100 && !can_connect(port); ++i) {
      int status;
      if (waitpid(s.pid_, &status, WNOHANG) == s.pid_) {
        s.pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (s.pid_ > 0 && can_connect(port)) s.port_ = port;
  }
  if (!s.port_)
    throw std::runtime_error("nginx did not start (see " + (s.temp_ / "logs/error.log").string() + ")");
  return s;
}

HttpServer::HttpServer(HttpServer&& o) noexcept : pid_(o.pid_), port_(o.port_), temp_(std::move(o.temp_)) {
  o.pid_ = -1;
  o.temp_.clear();
}

HttpServer::~HttpServer() {
  if (pid_ > 0) {
    kill(-pid_, SIGTERM);  // its own process group: the server and its workers
    kill(pid_, SIGTERM);
    int status;
    for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  if (!temp_.empty()) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
}

std::string HttpServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

bool have_nginx() {
  return run_command("command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx") == 0;
}

int run_command(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    if (out) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {
std::string unhex(const std::string& line) {
  std::string out;
  auto v = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < line.size(); i += 2) out += char(v(line[i]) << 4 | v(line[i + 1]));
  return out;
}
}  // namespace

std::vector<std::pair<std::string, std::string>> mdb_dump_records(const fs::path& db) {
  std::string text;
  if (run_command("mdb_dump '" + db.string() + "'", &text) != 0)
    throw std::runtime_error("mdb_dump failed: " + text);
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t pos = text.find("HEADER=END\n");
  std::vector<std::string> lines;
  for (std::size_t p = pos == std::string::npos ? 0 : pos + 11; p < text.size();) {
    const std::size_t e = std::min(text.find('\n', p), text.size());
    lines.push_back(text.substr(p, e - p));
    p = e + 1;
  }
  for (std::size_t i = 0; i + 1 < lines.size(); i += 2) {
    if (lines[i] == "DATA=END" || lines[i].empty() || lines[i][0] != ' ') break;
    out.emplace_back(unhex(lines[i].substr(1)), unhex(lines[i + 1].substr(1)));
  }
  return out;
}

long mdb_stat_entries(const fs::path& db) {
  std::string text;
  if (run_command("mdb_stat '" + db.string() + "'", &text) != 0) return -1;
  const auto at = text.find("Entries: ");
  return at == std::string::npos ? -1 : std::stol(text.substr(at + 9));
}

std::string protoc_decode_datum(const std::string& bytes) {
  const fs::path tmp = fs::temp_directory_path() / ("incept_datum_" + std::to_string(getpid()) + ".bin");
  std::ofstream(tmp, std::ios::binary) << bytes;
  std::string text;
  run_command(std::string("protoc --decode caffe.Datum -I'") + INCEPT_SOURCE_DIR + "' '" + INCEPT_SOURCE_DIR +
                  "/data/caffe.proto' < '" + tmp.string() + "'",
              &text);
  fs::remove(tmp);
  return text;
}

}  // namespace incept::testing
