// Real HTTP servers for the ingest tests, started and stopped by the test on 127.0.0.1:
// Python's http.server, nginx with autoindex (temp prefix, pid and logs; any user), and
// custom Python scripts (fault servers) that print "PORT <n>" once listening.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace incept::testing {

class HttpServer {
 public:
  // python3 -m http.server 0 --bind 127.0.0.1 --directory dir
  static HttpServer python(const std::filesystem::path& dir);
  // nginx -c <temp conf> -g 'daemon off;' serving dir with autoindex on a free port.
  static HttpServer nginx(const std::filesystem::path& dir);
  // python3 script args...; the script prints "PORT <n>" when it listens.
  static HttpServer script(const std::filesystem::path& script, const std::vector<std::string>& args);

  HttpServer(HttpServer&& o) noexcept;
  HttpServer& operator=(HttpServer&&) = delete;
  HttpServer(const HttpServer&) = delete;
  ~HttpServer();

  int port() const { return port_; }
  // "http://127.0.0.1:<port>" + path (path starts with '/').
  std::string url(const std::string& path = "/") const;
  int pid() const { return pid_; }

 private:
  HttpServer() = default;
  int pid_ = -1;
  int port_ = 0;
  std::filesystem::path temp_;  // nginx prefix (removed on stop)
};

// True when nginx is installed (tests using it skip with a reason otherwise).
bool have_nginx();

// Runs a command line through /bin/sh, returns its exit status; output captured into *out.
int run_command(const std::string& cmd, std::string* out = nullptr);

// Independent LMDB checks through lmdb-utils: every (key, value) of `mdb_dump` (hex format),
// and the entry count printed by `mdb_stat`.
std::vector<std::pair<std::string, std::string>> mdb_dump_records(const std::filesystem::path& db);
long mdb_stat_entries(const std::filesystem::path& db);
// `protoc --decode caffe.Datum data/caffe.proto` on one serialized record: the text format.
std::string protoc_decode_datum(const std::string& bytes);

}  // namespace incept::testing
