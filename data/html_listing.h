// Directory listings served over HTTP (nginx autoindex, Apache mod_autoindex, Python's
// http.server): a small HTML tokenizer (tags, quoted/unquoted attributes, comments,
// script/style, entities) collects the <a href> links, which are then resolved against the
// page URL and sorted into sub-folders and files. Links outside the start URL (another
// host, a path above it, '..' tricks) are refused and reported, never followed.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/url.h"

namespace incept::data {

struct HtmlLinks {
  std::string title;               // <title> text, entities decoded
  std::string heading;             // first <h1> text
  std::vector<std::string> hrefs;  // every <a href>, in document order, entities decoded
};
HtmlLinks parse_html_links(std::string_view html);
std::string decode_html_entities(std::string_view s);

struct ListingEntry {
  Url url;
  std::string name;  // percent-decoded last path segment, without a trailing '/'
};

struct Listing {
  bool is_listing = false;                                   // false: the page is not a directory index
  std::vector<ListingEntry> dirs;                            // links ending in '/', below the page
  std::vector<ListingEntry> files;                           // other links below the page (any extension)
  std::vector<std::pair<std::string, std::string>> refused;  // (link, reason)
};

// Reads the listing page at `page` during a crawl started at `root` (both end with '/').
// Navigation links (sort columns, parent folders) are ignored silently.
Listing parse_listing(const Url& page, const Url& root, std::string_view html);

}  // namespace incept::data
