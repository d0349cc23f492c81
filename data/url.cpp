// URL parsing and resolution (url.h).
#include "data/url.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <vector>

namespace incept::data {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int default_port(const std::string& scheme) {
  return scheme == "https" ? 443 : 80;
}

// RFC 3986 5.2.4 on an encoded path (empty segments collapse too).
std::string remove_dot_segments(std::string_view path) {
  std::vector<std::string_view> out;
  bool dir = false;  // the result names a directory (ends with '/')
  for (std::size_t pos = path.empty() || path[0] != '/' ? 0 : 1;;) {
    std::size_t end = path.find('/', pos);
    const bool last = end == std::string_view::npos;
    if (last) end = path.size();
    const std::string_view seg = path.substr(pos, end - pos);
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
      dir = true;
    } else if (seg == "." || seg.empty()) {
      dir = true;
    } else {
      out.push_back(seg);
      dir = false;
    }
    if (last) break;
    pos = end + 1;
  }
  std::string r;
  for (auto s : out) {
    r += '/';
    r.append(s);
  }
  if (r.empty() || dir) r += "/";
  return r;
}

}  // namespace

std::string Url::str() const {
  std::string s = scheme + "://" + host;
  if (port != default_port(scheme)) {
    s += ':';
    s += std::to_string(port);
  }
  s += path;
  if (!query.empty()) s += "?" + query;
  return s;
}

bool is_http_url(std::string_view s) {
  const std::string l = lower(s.substr(0, 8));
  return l.rfind("http://", 0) == 0 || l.rfind("https://", 0) == 0;
}

std::optional<Url> parse_url(std::string_view s) {
  const auto colon = s.find("://");
  if (colon == std::string_view::npos) return std::nullopt;
  Url u;
  u.scheme = lower(s.substr(0, colon));
  if (u.scheme != "http" && u.scheme != "https") return std::nullopt;
  std::string_view rest = s.substr(colon + 3);
  if (auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const std::size_t path_start = std::min(rest.find_first_of("/?"), rest.size());
  std::string_view authority = rest.substr(0, path_start);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority = authority.substr(at + 1);
  std::string_view host = authority;
  u.port = default_port(u.scheme);
  const auto pcolon = authority.rfind(':');
  if (pcolon != std::string_view::npos && authority.find(']', pcolon) == std::string_view::npos) {
    host = authority.substr(0, pcolon);
    const std::string_view port = authority.substr(pcolon + 1);
    if (!port.empty()) {
      if (port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit)) return std::nullopt;
      u.port = std::stoi(std::string(port));
    }
  }
  if (host.empty()) return std::nullopt;
  u.host = lower(host);
  std::string_view path = rest.substr(path_start);
  if (auto q = path.find('?'); q != std::string_view::npos) {
    u.query = std::string(path.substr(q + 1));
    path = path.substr(0, q);
  }
  u.path = path.empty() ? "/" : remove_dot_segments(path);
  return u;
}

std::optional<Url> resolve_url(const Url& base, std::string_view href) {
  while (!href.empty() && std::isspace(static_cast<unsigned char>(href.front()))) href.remove_prefix(1);
  while (!href.empty() && std::isspace(static_cast<unsigned char>(href.back()))) href.remove_suffix(1);
  if (auto hash = href.find('#'); hash != std::string_view::npos) href = href.substr(0, hash);
  // A scheme: letters, digits, + - . before the first ':' (and before any / ? #).
  const auto colon = href.find(':');
  if (colon != std::string_view::npos && colon < href.find_first_of("/?")) {
    const std::string scheme = lower(href.substr(0, colon));
    if (scheme != "http" && scheme != "https") return std::nullopt;
    return parse_url(href);
  }
  if (href.rfind("//", 0) == 0) return parse_url(base.scheme + ":" + std::string(href));
  Url u = base;
  u.query.clear();
  std::string_view path = href;
  if (auto q = path.find('?'); q != std::string_view::npos) {
    u.query = std::string(path.substr(q + 1));
    path = path.substr(0, q);
  }
  if (path.empty()) {
    if (u.query.empty()) u.query = base.query;
    return u;
  }
  if (path.front() == '/') {
    u.path = remove_dot_segments(path);
  } else {
    const std::string dir = base.path.substr(0, base.path.rfind('/') + 1);
    u.path = remove_dot_segments(dir + std::string(path));
  }
  return u;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      const int hi = i + 1 < s.size() ? hex(s[i + 1]) : -1;
      const int lo = i + 2 < s.size() ? hex(s[i + 2]) : -1;
      if (hi >= 0 && lo >= 0) {
        out += char(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

bool has_dotdot_segment(std::string_view path) {
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t end = path.find_first_of("/\\", pos);
    if (end == std::string_view::npos) end = path.size();
    if (path.substr(pos, end - pos) == "..") return true;
    pos = end + 1;
  }
  return false;
}

bool url_within(const Url& u, const Url& root) {
  return u.scheme == root.scheme && u.host == root.host && u.port == root.port &&
         u.path.rfind(root.path, 0) == 0;
}

}  // namespace incept::data
