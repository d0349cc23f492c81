// Finds the images of a dataset source and their classes, as DIGITS' parse_folder does:
// an http(s) URL of a directory listing (crawled concurrently), a local folder, or a text
// file of "path label" lines. Classes are the top-level sub-folders sorted by name; images
// in deeper folders belong to their class; accepted extensions .jpg .jpeg .png .bmp .ppm in
// any case. Listing failures are collected with the URL and reason, never fatal unless the
// start URL itself can't be read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/http_fetcher.h"

namespace incept::data {

struct Failure {
  std::string what;    // URL or path
  std::string reason;  // e.g. "HTTP 404", "not an image (...)"
  std::string stage;   // "crawl", "download", "decode", "plan"
};

struct SourceScan {
  std::vector<std::string> class_names;          // folder names (or labels), index = class
  std::vector<std::vector<std::string>> images;  // per class: URLs or local paths, sorted
  std::vector<Failure> failures;
  std::int64_t listings = 0;  // pages (or folders) read
  double seconds = 0;
  std::vector<HttpFetcher::HostStats> http_hosts;  // how the crawl paced each host
};

struct ScanOptions {
  HttpOptions http;
  std::string labels_file;                      // text-file sources: one class name per line (optional)
  std::vector<HttpFetcher::HostStats> learned;  // an earlier crawl's pace per host
};

bool is_supported_image_name(const std::string& name);
// Dispatches on the kind of source. Throws incept::Error when it can't be read at all.
SourceScan scan_source(const std::string& source, const ScanOptions& opt);
SourceScan crawl_http(const std::string& url, const ScanOptions& opt);
SourceScan scan_folder(const std::string& dir);
SourceScan scan_text_file(const std::string& path, const std::string& labels_file);

}  // namespace incept::data
