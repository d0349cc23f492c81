// HTML links and directory-listing classification (html_listing.h).
#include "data/html_listing.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace incept::data {
namespace {

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::size_t ifind(std::string_view hay, std::string_view needle, std::size_t from) {
  for (std::size_t i = from; i + needle.size() <= hay.size(); ++i)
    if (iequal(hay.substr(i, needle.size()), needle)) return i;
  return std::string_view::npos;
}

bool is_space(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}

std::string collapse_space(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Text up to the closing tag `</name`, tags inside removed.
std::string element_text(std::string_view html, std::size_t pos, std::string_view name) {
  const std::size_t end = ifind(html, std::string("</") + std::string(name), pos);
  std::string_view body =
      html.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
  std::string text;
  bool in_tag = false;
  for (char c : body) {
    if (c == '<')
      in_tag = true;
    else if (c == '>')
      in_tag = false;
    else if (!in_tag)
      text += c;
  }
  return collapse_space(decode_html_entities(text));
}

}  // namespace

std::string decode_html_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const std::size_t semi = s.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out += '&';
      continue;
    }
    const std::string_view ent = s.substr(i + 1, semi - i - 1);
    long code = -1;
    if (ent == "amp")
      code = '&';
    else if (ent == "lt")
      code = '<';
    else if (ent == "gt")
      code = '>';
    else if (ent == "quot")
      code = '"';
    else if (ent == "apos")
      code = '\'';
    else if (ent == "nbsp")
      code = ' ';
    else if (ent.size() > 1 && ent[0] == '#') {
      const bool hex = ent[1] == 'x' || ent[1] == 'X';
      const std::string digits(ent.substr(hex ? 2 : 1));
      char* endp = nullptr;
      code = digits.empty() ? -1 : std::strtol(digits.c_str(), &endp, hex ? 16 : 10);
      if (endp == nullptr || *endp != '\0') code = -1;
    }
    if (code < 0 || code > 0x10FFFF) {
      out += '&';
      continue;
    }
    if (code < 0x80) {  // UTF-8
      out += char(code);
    } else if (code < 0x800) {
      out += char(0xC0 | code >> 6), out += char(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += char(0xE0 | code >> 12), out += char(0x80 | (code >> 6 & 0x3F)),
          out += char(0x80 | (code & 0x3F));
    } else {
      out += char(0xF0 | code >> 18), out += char(0x80 | (code >> 12 & 0x3F));
      out += char(0x80 | (code >> 6 & 0x3F)), out += char(0x80 | (code & 0x3F));
    }
    i = semi;
  }
  return out;
}

HtmlLinks parse_html_links(std::string_view html) {
  HtmlLinks out;
  std::size_t i = 0;
  const std::size_t n = html.size();
  while ((i = html.find('<', i)) != std::string_view::npos) {
    if (html.compare(i, 4, "<!--") == 0) {  // comment
      const std::size_t end = html.find("-->", i + 4);
      i = end == std::string_view::npos ? n : end + 3;
      continue;
    }
    if (i + 1 < n && (html[i + 1] == '!' || html[i + 1] == '?')) {  // doctype, processing instruction
      const std::size_t end = html.find('>', i);
      i = end == std::string_view::npos ? n : end + 1;
      continue;
    }
    std::size_t p = i + 1;
    const bool closing = p < n && html[p] == '/';
    if (closing) ++p;
    const std::size_t name_start = p;
    while (p < n && (std::isalnum(static_cast<unsigned char>(html[p])) || html[p] == '-')) ++p;
    const std::string_view name = html.substr(name_start, p - name_start);
    if (name.empty()) {  // a stray '<' in text
      i = name_start;
      continue;
    }
    // Attributes: name, name=value, name="value", name='value'.
    std::string href;
    bool has_href = false;
    while (p < n && html[p] != '>') {
      if (is_space(html[p]) || html[p] == '/') {
        ++p;
        continue;
      }
      const std::size_t an = p;
      while (p < n && !is_space(html[p]) && html[p] != '=' && html[p] != '>' && html[p] != '/') ++p;
      const std::string_view attr = html.substr(an, p - an);
      while (p < n && is_space(html[p])) ++p;
      std::string_view value;
      if (p < n && html[p] == '=') {
        ++p;
        while (p < n && is_space(html[p])) ++p;
        if (p < n && (html[p] == '"' || html[p] == '\'')) {
          const char q = html[p++];
          const std::size_t end = std::min(html.find(q, p), n);
          value = html.substr(p, end - p);
          p = end + 1;
        } else {
          const std::size_t vs = p;
          while (p < n && !is_space(html[p]) && html[p] != '>') ++p;
          value = html.substr(vs, p - vs);
        }
      }
      if (!closing && iequal(name, "a") && iequal(attr, "href")) {
        href = decode_html_entities(value);
        has_href = true;
      }
      if (attr.empty()) ++p;
    }
    i = std::min(p + 1, n);
    if (closing) continue;
    if (has_href) out.hrefs.push_back(std::move(href));
    if (iequal(name, "title") && out.title.empty()) out.title = element_text(html, i, "title");
    if (iequal(name, "h1") && out.heading.empty()) out.heading = element_text(html, i, "h1");
    if (iequal(name, "script") || iequal(name, "style")) {  // raw text: skip to its end tag
      const std::size_t end = ifind(html, std::string("</") + std::string(name), i);
      i = end == std::string_view::npos ? n : end;
    }
  }
  return out;
}

Listing parse_listing(const Url& page, const Url& root, std::string_view html) {
  const HtmlLinks links = parse_html_links(html);
  Listing out;
  std::set<std::string> seen;
  for (const std::string& href : links.hrefs) {
    if (href.empty() || href[0] == '#' || href[0] == '?') continue;  // sort columns, anchors
    const auto u = resolve_url(page, href);
    if (!u) continue;  // mailto:, javascript:, ftp: ...
    const bool same_server = u->scheme == page.scheme && u->host == page.host && u->port == page.port;
    // The page itself or one of its parents (the "Parent Directory" link): navigation.
    if (same_server && u->query.empty() && page.path.rfind(u->path, 0) == 0 && u->path.back() == '/')
      continue;
    if (same_server && !u->query.empty() && u->path == page.path) continue;  // ?C=N;O=D
    const std::string decoded = percent_decode(href);
    if (has_dotdot_segment(decoded) || has_dotdot_segment(percent_decode(u->path))) {
      out.refused.emplace_back(href, "link contains '..'");
      continue;
    }
    if (!url_within(*u, root)) {
      out.refused.emplace_back(u->str(), "link leaves the start URL " + root.str());
      continue;
    }
    if (u->path.rfind(page.path, 0) != 0) {
      out.refused.emplace_back(u->str(), "link points outside this folder " + page.str());
      continue;
    }
    if (!seen.insert(u->str()).second) continue;  // Apache lists the icon and the name
    const bool is_dir = u->path.back() == '/';
    std::string_view last = u->path;
    if (is_dir) last.remove_suffix(1);
    last = last.substr(last.rfind('/') + 1);
    ListingEntry e{*u, percent_decode(last)};
    (is_dir ? out.dirs : out.files).push_back(std::move(e));
  }
  const auto says_index = [](const std::string& s) {
    return s.find("Index of") != std::string::npos || s.find("Directory listing for") != std::string::npos;
  };
  out.is_listing =
      says_index(links.title) || says_index(links.heading) || !out.dirs.empty() || !out.files.empty();
  return out;
}

}  // namespace incept::data
