// The images a user hands to classify: local files or http(s):// URLs (fetched concurrently
// through data/http_fetcher.h, redirects followed within the URL's host), as bytes to decode.
#pragma once

#include <string>
#include <vector>

#include "data/http_fetcher.h"

namespace incept::data {

// The bytes of each source, in order. Throws Error naming the first source that cannot be read
// (missing file, HTTP error, timeout) with the reason.
std::vector<std::string> read_image_sources(const std::vector<std::string>& sources,
                                            const HttpOptions& http = {});

}  // namespace incept::data
