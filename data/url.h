// Minimal http(s) URL handling for the crawler: parse, resolve an href against the page's
// URL (RFC 3986 merge and dot-segment removal), percent-decode, and the scope rule that
// keeps a crawl inside the start URL's scheme, host, port and path.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace incept::data {

struct Url {
  std::string scheme;  // "http" or "https", lower case
  std::string host;    // lower case
  int port = 0;        // explicit or the scheme's default
  std::string path;    // starts with '/', still percent-encoded
  std::string query;   // without '?', empty if none

  std::string str() const;  // scheme://host[:port]/path[?query]
};

// True for strings that start with http:// or https:// (case-insensitive).
bool is_http_url(std::string_view s);
std::optional<Url> parse_url(std::string_view s);
// Resolves href (absolute, network-path, absolute-path or relative) against base. The
// fragment is dropped. nullopt for other schemes (mailto:, javascript:, ftp:) or bad input.
std::optional<Url> resolve_url(const Url& base, std::string_view href);
std::string percent_decode(std::string_view s);
// True when a '/'-separated segment of the (percent-decoded) path is exactly "..".
bool has_dotdot_segment(std::string_view path);
// Same scheme, host and port, and path under root.path (root.path ends with '/').
bool url_within(const Url& u, const Url& root);

}  // namespace incept::data
