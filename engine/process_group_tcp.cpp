// TCP process group (process_group.h): rank 0 listens on HOST:PORT, every other rank connects
// to it (a star). Messages are framed as [type u32][length u32][payload], all integers in host
// order (every node of a job runs the same build on the same kind of machine). Collectives go
// through rank 0: a broadcast is rank 0 sending to each peer; an all_gather is every peer
// sending its part to rank 0, which answers with the gathered whole. A monitoring thread reads
// every socket, sends heartbeats and declares a peer lost on EOF (its process died: the kernel
// closes its sockets), on silence longer than the peer timeout, or on its failure report;
// rank 0 then tells every other rank, so nobody waits on a dead peer.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>

#include "engine/check.h"
#include "engine/process_group.h"

namespace incept {
namespace {

using Clock = std::chrono::steady_clock;

enum MsgType : std::uint32_t {
  kHello = 1,      // peer -> 0: "incept-pg 1 <rank> <world>"
  kWelcome = 2,    // 0 -> peer: every rank has joined
  kReject = 3,     // 0 -> peer: why this process cannot join
  kHeartbeat = 4,  // both ways
  kData = 5,       // [seq u64][bytes]: a broadcast (0 -> peer) or a part of an all_gather (peer -> 0)
  kGathered = 6,   // [seq u64][encode_strings(parts)]: 0 -> peer
  kLost = 7,       // the reason a rank is lost (0 -> peer), or a peer's own failure (peer -> 0)
  kBye = 8,        // after finish(): closing is not a loss
};
constexpr std::size_t kHeader = 8;
constexpr std::uint32_t kMaxPayload = 1u << 30;

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
Clock::time_point after(double s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
}
void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string frame(std::uint32_t type, std::string_view payload) {
  std::string out(kHeader, '\0');
  const auto len = static_cast<std::uint32_t>(payload.size());
  std::memcpy(out.data(), &type, 4);
  std::memcpy(out.data() + 4, &len, 4);
  out += payload;
  return out;
}

std::string with_seq(std::uint64_t seq, std::string_view data) {
  std::string out(sizeof(seq), '\0');
  std::memcpy(out.data(), &seq, sizeof(seq));
  out += data;
  return out;
}

// Writes all of `data` to a non-blocking socket before `deadline`; false on error or timeout.
bool send_all(int fd, std::string_view data, Clock::time_point deadline) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const double left = seconds(deadline - Clock::now());
      if (left <= 0) {
        errno = ETIMEDOUT;  // the peer does not read
        return false;
      }
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(std::min(left, 0.1) * 1000) + 1);
      continue;
    }
    return false;
  }
  return true;
}

// Reads what is there into `buf`; false on EOF or a socket error.
bool read_available(int fd, std::string& buf) {
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buf.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
}

// Takes one complete message off the front of `buf`, if there is one. Throws on a bad length.
bool next_message(std::string& buf, std::uint32_t& type, std::string& payload) {
  if (buf.size() < kHeader) return false;
  std::uint32_t len = 0;
  std::memcpy(&type, buf.data(), 4);
  std::memcpy(&len, buf.data() + 4, 4);
  if (len > kMaxPayload || type < kHello || type > kBye)
    throw Error(fmt::format("a message that is not incept's (type {}, length {})", type, len));
  if (buf.size() < kHeader + len) return false;
  payload = buf.substr(kHeader, len);
  buf.erase(0, kHeader + len);
  return true;
}

// One connected peer (rank 0 has world-1 of them, the others one: rank 0).
struct Peer {
  Fd fd;
  int rank = -1;
  std::string inbuf;
  Clock::time_point last_heard;
  std::atomic<bool> open{true};
  std::atomic<bool> finished{false};                        // sent kBye
  std::mutex write_mu;                                      // the caller's thread and the monitor both write
  std::deque<std::pair<std::uint32_t, std::string>> inbox;  // kData / kGathered, in order
};

class TcpProcessGroup final : public ProcessGroup {
 public:
  TcpProcessGroup(const DistEnv& env, const DistFlags& flags, std::string host, int port)
      : rank_(env.rank),
        world_(env.world),
        host_(std::move(host)),
        port_(port),
        timeout_s_(flags.timeout_s),
        peer_timeout_s_(flags.peer_timeout_s) {
    peers_.resize(static_cast<std::size_t>(world_));
    if (rank_ == 0)
      join_as_root();
    else
      join_as_peer();
    monitor_ = std::thread([this] { monitor(); });
  }

  ~TcpProcessGroup() override {
    if (!finished_ && !aborted_ && !peer_lost())
      abort("it left the job before finishing (its process is ending; see its log)");
    stop_ = true;
    if (monitor_.joinable()) monitor_.join();
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string kind() const override { return "tcp"; }

  std::string broadcast(const std::string& from_rank0) override {
    check();
    const std::uint64_t seq = seq_++;
    if (rank_ == 0) {
      for (int r = 1; r < world_; ++r) send(peer(r), kData, with_seq(seq, from_rank0));
      return from_rank0;
    }
    return receive(0, kData, seq, "broadcast");
  }

  std::vector<std::string> all_gather(const std::string& mine) override {
    check();
    const std::uint64_t seq = seq_++;
    if (rank_ != 0) {
      send(peer(0), kData, with_seq(seq, mine));
      return decode_strings(receive(0, kGathered, seq, "all_gather"), static_cast<std::size_t>(world_));
    }
    std::vector<std::string> parts(static_cast<std::size_t>(world_));
    parts[0] = mine;
    for (int r = 1; r < world_; ++r)
      parts[static_cast<std::size_t>(r)] = receive(r, kData, seq, "all_gather");
    const std::string all = with_seq(seq, encode_strings(parts));
    for (int r = 1; r < world_; ++r) send(peer(r), kGathered, all);
    return parts;
  }

  void barrier() override { all_gather(std::string()); }

  void abort(const std::string& why) override {
    if (aborted_.exchange(true)) return;
    const std::string text = rank_ == 0 ? fmt::format("rank 0 failed: {}", why) : why;
    for (Peer* p : open_peers()) send(*p, kLost, text, /*quiet=*/true);
  }

  void finish() override {
    barrier();
    finished_ = true;
    for (Peer* p : open_peers()) send(*p, kBye, "", /*quiet=*/true);
  }

 private:
  Peer& peer(int r) { return *peers_[static_cast<std::size_t>(r)]; }
  std::string where() const { return fmt::format("tcp:{}:{}", host_, port_); }

  std::vector<Peer*> open_peers() {
    std::vector<Peer*> out;
    for (auto& p : peers_)
      if (p && p->open) out.push_back(p.get());
    return out;
  }

  // Sends one message; a failed send loses the peer (unless quiet: best-effort notices).
  void send(Peer& p, std::uint32_t type, std::string_view payload, bool quiet = false) {
    bool sent = false;
    int err = 0;
    {
      std::lock_guard<std::mutex> lock(p.write_mu);
      sent = send_all(p.fd.get(), frame(type, payload), after(peer_timeout_s_));
      err = errno;
    }
    if (!sent && !quiet)  // outside the lock: as rank 0, lose() writes to every peer
      lose(fmt::format("lost rank {}: sending to it failed ({}; the process died?)", p.rank,
                       std::strerror(err)));
  }

  // Waits for the next message from rank `src`, which must be `type` for collective `seq`.
  std::string receive(int src, std::uint32_t type, std::uint64_t seq, const char* what) {
    Peer& p = peer(src);
    const auto deadline = after(timeout_s_);
    std::unique_lock<std::mutex> lock(inbox_mu_);
    for (;;) {
      if (!p.inbox.empty()) {
        auto [got_type, payload] = std::move(p.inbox.front());
        p.inbox.pop_front();
        std::uint64_t got_seq = ~0ull;
        if (payload.size() >= sizeof(got_seq)) std::memcpy(&got_seq, payload.data(), sizeof(got_seq));
        if (got_type != type || got_seq != seq) {
          lock.unlock();
          const std::string why = fmt::format(
              "{} #{}: rank {} sent message type {} for collective #{}: the ranks call different "
              "collectives (a bug)",
              what, seq, src, got_type, got_seq);
          fail(why);
        }
        return payload.substr(sizeof(got_seq));
      }
      if (peer_lost()) {
        lock.unlock();
        throw_lost();
      }
      if (Clock::now() >= deadline) {
        lock.unlock();
        fail(fmt::format("{} #{} timed out after {:g} s waiting for rank {} (--dist-timeout)", what, seq,
                         timeout_s_, src));
      }
      inbox_cv_.wait_until(lock, std::min(deadline, after(0.1)));
    }
  }

  // This rank gives up: the peers lose it, this rank's callbacks run, and the caller gets Error.
  [[noreturn]] void fail(const std::string& why) {
    abort(why);
    lose(why);
    throw_lost();
  }

  // A peer is lost: record it (callbacks run), wake the waiting collective, and as rank 0 tell
  // every other rank.
  void lose(const std::string& why) {
    if (!report_lost(why)) return;
    inbox_cv_.notify_all();
    if (rank_ == 0)
      for (Peer* p : open_peers()) send(*p, kLost, why, /*quiet=*/true);
  }

  void join_as_root();
  void join_as_peer();
  void monitor();
  void handle(Peer& p, std::uint32_t type, std::string payload);

  const int rank_, world_;
  const std::string host_;
  const int port_;
  const double timeout_s_, peer_timeout_s_;
  std::vector<std::unique_ptr<Peer>> peers_;  // by rank; null for this rank (and non-0 ranks on peers)
  std::uint64_t seq_ = 0;
  std::mutex inbox_mu_;
  std::condition_variable inbox_cv_;
  std::atomic<bool> stop_{false}, finished_{false}, aborted_{false};
  std::thread monitor_;
};

// True for 127.0.0.0/8, ::1 and "localhost": a job confined to this machine.
bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return ::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

// Rank 0 listens on every interface at PORT (a node name often resolves to 127.0.1.1 on the
// node itself but to its network address elsewhere), or only on loopback when HOST is a
// loopback address. HOST must still be an address of this node: else rank 0 was started on
// another node than the one the others will call.
Fd listen_for_peers(const std::string& host, int port, const std::string& where) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found); rc != 0)
    throw Error(fmt::format("rank 0: rendezvous {}: cannot resolve {} ({})", where, host, gai_strerror(rc)));
  bool local = false;
  for (addrinfo* a = found; a && !local; a = a->ai_next) {
    Fd probe(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    sockaddr_storage any_port{};
    std::memcpy(&any_port, a->ai_addr, a->ai_addrlen);
    if (a->ai_family == AF_INET) reinterpret_cast<sockaddr_in*>(&any_port)->sin_port = 0;
    if (a->ai_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&any_port)->sin6_port = 0;
    local =
        probe.get() >= 0 && ::bind(probe.get(), reinterpret_cast<sockaddr*>(&any_port), a->ai_addrlen) == 0;
  }
  ::freeaddrinfo(found);
  if (!local)
    throw Error(
        fmt::format("rank 0: rendezvous {}: {} is not an address of this node; start rank 0 on {} or "
                    "give its own address",
                    where, host, host));
  if (!is_loopback(host)) {
    hints.ai_family = AF_INET;
    if (const int rc = ::getaddrinfo(nullptr, port_text.c_str(), &hints, &found); rc != 0)
      throw Error(fmt::format("rank 0: rendezvous {}: no wildcard address ({})", where, gai_strerror(rc)));
  } else if (const int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    throw Error(fmt::format("rank 0: rendezvous {}: cannot resolve {} ({})", where, host, gai_strerror(rc)));
  }
  Fd listener;
  std::string bind_error = "no address";
  for (addrinfo* a = found; a && listener.get() < 0; a = a->ai_next) {
    Fd s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (s.get() < 0) continue;
    int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(s.get(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(s.get(), 256) == 0)
      listener = std::move(s);
    else
      bind_error = std::strerror(errno);
  }
  ::freeaddrinfo(found);
  if (listener.get() < 0)
    throw Error(fmt::format("rank 0: rendezvous {}: cannot listen on port {} ({}); choose a free port", where,
                            port, bind_error));
  set_nonblocking(listener.get());
  return listener;
}

// Rank 0: listen, accept every other rank's hello (checking its rank and world), then welcome all.
void TcpProcessGroup::join_as_root() {
  Fd listener = listen_for_peers(host_, port_, where());

  struct Pending {
    Fd fd;
    std::string buf;
  };
  std::vector<Pending> pending;
  std::vector<std::string> rejected;
  int joined = 0;
  const auto deadline = after(timeout_s_);
  const auto reject = [&](Pending& c, const std::string& why) {
    send_all(c.fd.get(), frame(kReject, why), after(1.0));
    rejected.push_back(why);
    c.fd.reset();
  };
  while (joined < world_ - 1) {
    const double left = seconds(deadline - Clock::now());
    if (left <= 0) {
      std::vector<int> missing;
      for (int r = 1; r < world_; ++r)
        if (!peers_[static_cast<std::size_t>(r)]) missing.push_back(r);
      std::string why =
          fmt::format("{} {} did not join the rendezvous {} within {:g} s (--dist-timeout)",
                      missing.size() == 1 ? "rank" : "ranks", fmt::join(missing, ","), where(), timeout_s_);
      if (!rejected.empty()) why += "; rejected: " + rejected.back();
      for (auto& p : peers_)
        if (p) send_all(p->fd.get(), frame(kLost, why), after(1.0));
      throw Error("rank 0: " + why);
    }
    std::vector<pollfd> fds{{listener.get(), POLLIN, 0}};
    for (auto& c : pending) fds.push_back({c.fd.get(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), static_cast<int>(std::min(left, 0.2) * 1000) + 1);
    if (fds[0].revents & POLLIN) {
      for (;;) {
        Fd c(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (c.get() < 0) break;
        set_nodelay(c.get());
        pending.push_back({std::move(c), {}});
      }
    }
    // Only the connections that were polled (those just accepted come next round).
    for (std::size_t i = 0; i + 1 < fds.size(); ++i) {
      Pending& c = pending[i];
      if (!(fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (!read_available(c.fd.get(), c.buf)) {
        c.fd.reset();
        continue;
      }
      std::uint32_t type = 0;
      std::string payload;
      try {
        if (!next_message(c.buf, type, payload)) continue;
      } catch (const Error& e) {
        reject(c, e.what());
        continue;
      }
      int r = -1, w = -1, version = 0;
      char magic[16] = {};
      if (type != kHello || std::sscanf(payload.c_str(), "%15s %d %d %d", magic, &version, &r, &w) != 4 ||
          std::string(magic) != "incept-pg" || version != 1) {
        reject(c, "not an incept process group hello");
      } else if (w != world_) {
        reject(c, fmt::format("rank {} was started with --world-size {}, rank 0 with {}", r, w, world_));
      } else if (r < 1 || r >= world_) {
        reject(c, fmt::format("rank {} is not a rank of a world of {}", r, world_));
      } else if (peers_[static_cast<std::size_t>(r)]) {
        reject(c, fmt::format("two processes claim rank {}", r));
      } else {
        auto p = std::make_unique<Peer>();
        p->fd = std::move(c.fd);
        p->rank = r;
        p->inbuf = std::move(c.buf);
        peers_[static_cast<std::size_t>(r)] = std::move(p);
        ++joined;
      }
    }
    std::erase_if(pending, [](const Pending& c) { return c.fd.get() < 0; });
  }
  for (int r = 1; r < world_; ++r) {
    Peer& p = peer(r);
    p.last_heard = Clock::now();
    send(p, kWelcome, "");
  }
}

// Connects with a bounded wait (a dead host must not block for the kernel's SYN timeout).
Fd connect_once(const addrinfo* a, double limit_s, int& err) {
  Fd s(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
  if (s.get() < 0) {
    err = errno;
    return Fd();
  }
  if (::connect(s.get(), a->ai_addr, a->ai_addrlen) == 0) return s;
  if (errno != EINPROGRESS) {
    err = errno;
    return Fd();
  }
  pollfd p{s.get(), POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(limit_s * 1000) + 1) <= 0) {
    err = ETIMEDOUT;
    return Fd();
  }
  socklen_t len = sizeof(err);
  ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0 ? std::move(s) : Fd();
}

void TcpProcessGroup::join_as_peer() {
  const auto deadline = after(timeout_s_);
  const std::string port = std::to_string(port_);
  std::string last_error = "not tried";
  double backoff = 0.02;
  Fd conn;
  while (conn.get() < 0) {
    const double left = seconds(deadline - Clock::now());
    if (left <= 0)
      throw Error(fmt::format("rank {}: could not reach rank 0 at {} within {:g} s (--dist-timeout): {}",
                              rank_, where(), timeout_s_, last_error));
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = ::getaddrinfo(host_.c_str(), port.c_str(), &hints, &found); rc != 0) {
      last_error = fmt::format("cannot resolve {} ({})", host_, gai_strerror(rc));
    } else {
      for (addrinfo* a = found; a && conn.get() < 0; a = a->ai_next) {
        int err = 0;
        conn = connect_once(a, std::min(left, 5.0), err);
        if (conn.get() < 0) last_error = std::strerror(err);
      }
      ::freeaddrinfo(found);
    }
    if (conn.get() < 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(backoff, std::max(left, 0.0))));
      backoff = std::min(backoff * 2, 1.0);
    }
  }
  set_nodelay(conn.get());
  auto p = std::make_unique<Peer>();
  p->fd = std::move(conn);
  p->rank = 0;
  peers_[0] = std::move(p);
  Peer& root = peer(0);
  send(root, kHello, fmt::format("incept-pg 1 {} {}", rank_, world_));
  // Rank 0 times out on the same bound and then says which ranks are missing: wait a little
  // longer than it, so that its message is the one every rank reports.
  const auto welcome_deadline =
      deadline + std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(std::min(peer_timeout_s_, 10.0)));
  for (;;) {
    const double left = seconds(welcome_deadline - Clock::now());
    if (left <= 0)
      throw Error(fmt::format(
          "rank {}: the rendezvous {} did not complete within {:g} s (--dist-timeout): rank 0 is still "
          "waiting for other ranks",
          rank_, where(), timeout_s_));
    pollfd pfd{root.fd.get(), POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min(left, 0.2) * 1000) + 1);
    const bool alive = read_available(root.fd.get(), root.inbuf);
    std::uint32_t type = 0;
    std::string payload;
    if (next_message(root.inbuf, type, payload)) {
      if (type == kWelcome) break;
      if (type == kReject)
        throw Error(fmt::format("rank {}: rank 0 at {} rejected this process: {}", rank_, where(), payload));
      if (type == kLost) throw Error(fmt::format("rank {}: {}", rank_, payload));
      throw Error(
          fmt::format("rank {}: unexpected message type {} during the rendezvous {}", rank_, type, where()));
    }
    if (!alive)
      throw Error(
          fmt::format("rank {}: rank 0 at {} closed the connection during the rendezvous", rank_, where()));
  }
  root.last_heard = Clock::now();
}

void TcpProcessGroup::handle(Peer& p, std::uint32_t type, std::string payload) {
  switch (type) {
    case kData:
    case kGathered: {
      std::lock_guard<std::mutex> lock(inbox_mu_);
      p.inbox.emplace_back(type, std::move(payload));
      inbox_cv_.notify_all();
      break;
    }
    case kLost:
      lose(rank_ == 0 ? fmt::format("rank {} failed: {}", p.rank, payload) : payload);
      break;
    case kBye:
      p.finished = true;
      break;
    default:
      break;  // heartbeats only refresh last_heard
  }
}

// Reads every socket, sends heartbeats, and turns EOF or silence into a lost peer.
void TcpProcessGroup::monitor() {
  const double beat = heartbeat_interval(peer_timeout_s_);
  auto next_beat = Clock::now();
  while (!stop_) {
    std::vector<Peer*> open = open_peers();
    std::vector<pollfd> fds;
    for (Peer* p : open) fds.push_back({p->fd.get(), POLLIN, 0});
    const double wait = std::clamp(seconds(next_beat - Clock::now()), 0.0, 0.05);
    ::poll(fds.data(), fds.size(), static_cast<int>(wait * 1000) + 1);
    const auto now = Clock::now();
    for (std::size_t i = 0; i < open.size(); ++i) {
      Peer& p = *open[i];
      bool alive = true;
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) alive = read_available(p.fd.get(), p.inbuf);
      std::uint32_t type = 0;
      std::string payload;
      try {
        while (next_message(p.inbuf, type, payload)) {
          p.last_heard = now;
          handle(p, type, std::move(payload));
        }
      } catch (const Error& e) {
        lose(fmt::format("lost rank {}: {}", p.rank, e.what()));
        alive = false;
      }
      if (!alive) {
        p.open = false;
        if (!p.finished && !finished_)
          lose(fmt::format("lost rank {}: its connection closed (the process died or exited)", p.rank));
      } else if (!finished_ && seconds(now - p.last_heard) > peer_timeout_s_) {
        lose(fmt::format("lost rank {}: nothing heard from it for {:.1f} s (--dist-peer-timeout {:g})",
                         p.rank, seconds(now - p.last_heard), peer_timeout_s_));
        p.last_heard = now;  // reported once
      }
    }
    if (now >= next_beat) {
      for (Peer* p : open_peers()) {
        std::unique_lock<std::mutex> lock(p->write_mu, std::try_to_lock);
        if (lock.owns_lock()) send_all(p->fd.get(), frame(kHeartbeat, ""), after(0.01));
      }
      next_beat = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(beat));
    }
  }
}

}  // namespace

std::unique_ptr<ProcessGroup> make_tcp_process_group(const DistEnv& env, const DistFlags& flags,
                                                     const std::string& host, int port) {
  return std::make_unique<TcpProcessGroup>(env, flags, host, port);
}

}  // namespace incept
