// bench_ingest: end-to-end imagenet_ingest throughput. Serves an ImageNet-shaped tree
// (bench_ingest_tree: >= 100 classes of ~110 KB 500x375 JPEGs) from nginx on 127.0.0.1 (or,
// where nginx is not installed, Python's http.server, which is much slower to serve) and
// ingests it over HTTP with the library (crawl, download, decode, resize to 256x256, JPEG
// encode, LMDB), several times; prints the median images/s, images/s per core, and the CPU
// seconds of the ingest and of the server (which shares the cores here); --json writes them.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/ingest.h"
#include "engine/log.h"
#include "incept_commit.h"

namespace fs = std::filesystem;

namespace {

double cpu_seconds_self() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

// utime + stime of pid and its direct children (nginx master + workers), from /proc.
double cpu_seconds_tree(int pid) {
  const double tick = double(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream f(e.path() / "stat");
    std::string s((std::istreambuf_iterator<char>(f)), {});
    const auto rp = s.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream in(s.substr(rp + 2));
    std::string state;
    long ppid, skip, utime, stime;
    in >> state >> ppid;
    for (int k = 0; k < 9; ++k) in >> skip;
    in >> utime >> stime;
    if (std::stoi(name) == pid || ppid == pid) total += double(utime + stime) / tick;
  }
  return total;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

const char* kNginx = "/usr/sbin/nginx";

// True once something accepts connections on 127.0.0.1:port (polled for up to timeout_s).
bool wait_for_port(int port, double timeout_s) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < end) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A port on 127.0.0.1 that was free a moment ago.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  close(fd);
  return ntohs(a.sin_port);
}

int start_nginx(const fs::path& root, const fs::path& prefix, int port) {
  fs::create_directories(prefix / "logs");
  std::ofstream(prefix / "nginx.conf")
      << "worker_processes auto;\npid " << (prefix / "nginx.pid").string() << ";\n"
      << (geteuid() == 0 ? "user root;\n" : "") << "events { worker_connections 4096; }\n"
      << "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n"
      << "  client_body_temp_path " << (prefix / "body").string() << ";\n  proxy_temp_path "
      << (prefix / "p").string() << ";\n  fastcgi_temp_path " << (prefix / "f").string()
      << ";\n  uwsgi_temp_path " << (prefix / "u").string() << ";\n  scgi_temp_path "
      << (prefix / "s").string() << ";\n"
      << "  types { image/jpeg JPEG jpg; text/html html; }\n"
      << "  server { listen 127.0.0.1:" << port << "; root " << root.string()
      << "; location / { autoindex on; } }\n}\n";
  const int pid = fork();
  if (pid == 0) {
    execl(kNginx, "nginx", "-p", prefix.c_str(), "-e", (prefix / "logs/error.log").c_str(), "-c",
          (prefix / "nginx.conf").c_str(), "-g", "daemon off;", nullptr);
    _exit(127);
  }
  return pid;
}

// Python's http.server (a threading server; its directory listing is one imagenet_ingest reads).
int start_python(const fs::path& root, int port) {
  const int pid = fork();
  if (pid == 0) {
    const std::string p = std::to_string(port);
    execlp("python3", "python3", "-m", "http.server", p.c_str(), "--bind", "127.0.0.1", "--directory",
           root.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tree = "/tmp/incept_bench_ingest_tree", out = "/tmp/incept_bench_ingest_out", encoding = "jpg";
  std::string server = "auto", json_out;
  int classes = 100, per_class = 60, runs = 3, threads = 0, downloads = 64, port = 0;
  CLI::App app{
      "bench_ingest: imagenet_ingest over HTTP (nginx or http.server on 127.0.0.1), images/s end to end"};
  app.add_option("--tree", tree, "ImageNet-shaped tree (generated with bench_ingest_tree if missing)")
      ->capture_default_str();
  app.add_option("--classes", classes, "classes when generating")->capture_default_str();
  app.add_option("--per-class", per_class, "images per class when generating")->capture_default_str();
  app.add_option("--out", out, "scratch output folder (replaced)")->capture_default_str();
  app.add_option("--runs", runs, "timed runs (median reported)")->capture_default_str();
  app.add_option("--threads", threads, "ingest worker threads (0: one per core)")->capture_default_str();
  app.add_option("--downloads", downloads, "concurrent downloads")->capture_default_str();
  app.add_option("--encoding", encoding, "jpg, png or none")->capture_default_str();
  app.add_option("--port", port, "server port on 127.0.0.1 (0: a free one)")->capture_default_str();
  app.add_option("--server", server, "nginx, python (http.server) or auto (nginx where installed)")
      ->capture_default_str();
  app.add_option("--json", json_out, "also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  if (server == "auto") server = access(kNginx, X_OK) == 0 ? "nginx" : "python";
  if (port == 0) port = free_port();
  if (server != "nginx" && server != "python") {
    fmt::print(stderr, "bench_ingest: --server must be nginx, python or auto, got {}\n", server);
    return 2;
  }

  if (!fs::exists(fs::path(tree) / "imagenet" / "train")) {
    const std::string gen = (fs::canonical("/proc/self/exe").parent_path() / "bench_ingest_tree").string();
    const std::string cmd =
        fmt::format("{} --out {} --classes {} --per-class {}", gen, tree, classes, per_class);
    fmt::print("generating: {}\n", cmd);
    if (std::system(cmd.c_str()) != 0) return 1;
  }
  const fs::path prefix = fs::temp_directory_path() / fmt::format("incept_bench_nginx_{}", getpid());
  const int server_pid = server == "nginx" ? start_nginx(tree, prefix, port) : start_python(tree, port);
  const auto stop_server = [&] {
    kill(server_pid, SIGTERM);
    waitpid(server_pid, nullptr, 0);
    fs::remove_all(prefix);
  };
  if (!wait_for_port(port, 15)) {
    fmt::print(stderr, "bench_ingest: the {} server did not listen on 127.0.0.1:{} within 15 s\n", server,
               port);
    stop_server();
    return 1;
  }
  fmt::print("serving {} with {} on 127.0.0.1:{}\n", tree,
             server == "nginx" ? "nginx" : "python3 -m http.server", port);
  incept::set_log_level(incept::LogLevel::kWarn);

  struct Run {
    double wall, write_s, cpu_self, cpu_server;
    std::int64_t images, failures, bytes;
  };
  std::vector<Run> results;
  int exit_code = 0;
  try {
    for (int r = 0; r < runs; ++r) {
      fs::remove_all(out);
      incept::data::IngestOptions o;
      o.source = fmt::format("http://127.0.0.1:{}/imagenet/train/", port);
      o.output_dir = out;
      o.threads = threads;
      o.http.max_in_flight = downloads;
      o.encoding = incept::data::parse_encoding(encoding);
      o.progress_interval_s = 1e9;
      const double c0 = cpu_seconds_self(), n0 = cpu_seconds_tree(server_pid);
      const auto t0 = std::chrono::steady_clock::now();
      const auto rep = incept::data::run_ingest(o);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      results.push_back({wall, rep.write_seconds, cpu_seconds_self() - c0, cpu_seconds_tree(server_pid) - n0,
                         rep.train_records + rep.val_records, rep.failures, rep.bytes_downloaded});
      const Run& x = results.back();
      fmt::print(
          "run {}: {} images in {:.2f} s = {:.0f} images/s ({:.0f} MB/s), ingest CPU {:.1f} s, server CPU "
          "{:.1f} s, failures {}\n",
          r, x.images, x.wall, x.images / x.wall, x.bytes / 1e6 / x.wall, x.cpu_self, x.cpu_server,
          x.failures);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_ingest: {}\n", e.what());
    exit_code = 1;
  }
  stop_server();
  if (results.empty()) return 1;
  std::sort(results.begin(), results.end(), [](const Run& a, const Run& b) { return a.wall < b.wall; });
  const Run& m = results[results.size() / 2];
  const unsigned cores = std::thread::hardware_concurrency();
  const double ips = m.images / m.wall;
  fmt::print("\nmachine: {} x {} cores; commit {} (build)\n", cpu_model(), cores, INCEPT_GIT_COMMIT);
  fmt::print("median of {}: {} images ({:.1f} KB avg) in {:.2f} s end to end (crawl included)\n",
             results.size(), m.images, m.bytes / 1e3 / double(std::max<std::int64_t>(1, m.images)), m.wall);
  fmt::print("  {:.0f} images/s, {:.0f} images/s per core ({} cores, {} on the same cores)\n", ips,
             ips / cores, cores, server);
  fmt::print("  {:.0f} images per ingest CPU-second; {:.0f} per CPU-second including {}\n",
             m.images / m.cpu_self, m.images / (m.cpu_self + m.cpu_server), server);
  if (!json_out.empty())
    std::ofstream(json_out) << nlohmann::json{{"commit", INCEPT_GIT_COMMIT},
                                              {"cpu", cpu_model()},
                                              {"cores", cores},
                                              {"server", server},
                                              {"runs", results.size()},
                                              {"images", m.images},
                                              {"failures", m.failures},
                                              {"kb_per_image",
                                               m.bytes / 1e3 / double(std::max<std::int64_t>(1, m.images))},
                                              {"wall_s", m.wall},
                                              {"img_per_s", ips},
                                              {"img_per_s_per_core", ips / cores},
                                              {"img_per_ingest_cpu_s", m.images / m.cpu_self},
                                              {"server_cpu_s", m.cpu_server}}
                                   .dump(1)
                            << "\n";
  return exit_code;
}
