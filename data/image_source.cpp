// Dataset sources: HTTP crawl, local folder, text file (image_source.h).
#include "data/image_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/html_listing.h"
#include "engine/check.h"
#include "engine/log.h"

namespace fs = std::filesystem;

namespace incept::data {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool looks_like_html(const FetchResult& r) {
  if (r.content_type.find("html") != std::string::npos) return true;
  const auto p = r.body.find_first_not_of(" \t\r\n");
  return p != std::string::npos && r.body[p] == '<';
}

}  // namespace

bool is_supported_image_name(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot);
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".ppm";
}

SourceScan crawl_http(const std::string& url, const ScanOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  auto root = parse_url(url);
  if (!root) throw Error(fmt::format("'{}' is not a valid http(s) URL", url));
  if (root->path.back() != '/') root->path += '/';
  root->query.clear();

  struct Dir {
    Url url;
    int cls;  // -1: the start page, whose sub-folders are the classes
  };
  std::vector<Dir> dirs{{*root, -1}};
  std::set<std::string> visited{root->str()};
  SourceScan scan;
  HttpFetcher fetcher(opt.http, *root, opt.learned);
  fetcher.submit(root->str(), 0, false);
  std::int64_t pending = 1;
  FetchResult r;
  auto fail = [&](const Dir& d, const std::string& what, const std::string& reason) {
    if (d.cls < 0) throw Error(fmt::format("cannot read the folder listing at {}: {}", what, reason));
    log_warn("crawl: {}: {} (skipped)", what, reason);
    scan.failures.push_back({what, reason, "crawl"});
  };
  while (pending > 0 && fetcher.next(&r)) {
    --pending;
    ++scan.listings;
    const Dir d = dirs[r.tag];
    if (!r.ok()) {
      fail(d, r.url, r.error);
      continue;
    }
    if (!looks_like_html(r)) {
      fail(d, r.url, fmt::format("not a directory listing (content type '{}')", r.content_type));
      continue;
    }
    const Url page = parse_url(r.final_url).value_or(d.url);
    Listing listing = parse_listing(page, *root, r.body);
    if (!listing.is_listing) {
      fail(d, r.url, "HTML page that is not a directory listing (no links to files or folders below it)");
      continue;
    }
    for (auto& [link, reason] : listing.refused) {
      log_warn("crawl: {}: link {} refused: {}", r.url, link, reason);
      scan.failures.push_back({link, reason + " (on " + r.url + ")", "crawl"});
    }
    if (d.cls < 0) {
      std::sort(listing.dirs.begin(), listing.dirs.end(),
                [](const ListingEntry& a, const ListingEntry& b) { return a.name < b.name; });
      for (auto& e : listing.dirs) {
        if (!visited.insert(e.url.str()).second) continue;
        const int cls = int(scan.class_names.size());
        scan.class_names.push_back(e.name);
        scan.images.emplace_back();
        dirs.push_back({e.url, cls});
        fetcher.submit(e.url.str(), dirs.size() - 1, false);
        ++pending;
      }
      if (scan.class_names.empty())
        throw Error(
            fmt::format("the listing at {} has no sub-folders: each class must be a folder of images", url));
      continue;
    }
    for (auto& e : listing.files)
      if (is_supported_image_name(e.name)) scan.images[d.cls].push_back(e.url.str());
    for (auto& e : listing.dirs) {
      if (!visited.insert(e.url.str()).second) continue;
      dirs.push_back({e.url, d.cls});
      fetcher.submit(e.url.str(), dirs.size() - 1, false);
      ++pending;
    }
  }
  fetcher.close();
  scan.http_hosts = fetcher.host_stats();
  for (const auto& h : scan.http_hosts) log_debug("crawl of {}", describe(h));
  for (auto& v : scan.images) std::sort(v.begin(), v.end());
  scan.seconds = seconds_since(t0);
  return scan;
}

SourceScan scan_folder(const std::string& dir) {
  const auto t0 = std::chrono::steady_clock::now();
  SourceScan scan;
  std::vector<fs::path> classes;
  std::error_code ec;
  for (const auto& e :
       fs::directory_iterator(fs::absolute(dir), fs::directory_options::skip_permission_denied, ec))
    if (e.is_directory()) classes.push_back(e.path());
  if (ec) throw Error(fmt::format("cannot read folder {}: {}", dir, ec.message()));
  std::sort(classes.begin(), classes.end());
  if (classes.empty())
    throw Error(fmt::format("{} has no sub-folders: each class must be a folder of images", dir));
  for (const auto& c : classes) {
    scan.class_names.push_back(c.filename().string());
    auto& files = scan.images.emplace_back();
    const auto opts =
        fs::directory_options::follow_directory_symlink | fs::directory_options::skip_permission_denied;
    for (auto it = fs::recursive_directory_iterator(c, opts, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory())
        ++scan.listings;
      else if (is_supported_image_name(it->path().filename().string()))
        files.push_back(it->path().string());
    }
    if (ec) {
      scan.failures.push_back({c.string(), ec.message(), "crawl"});
      ec.clear();
    }
    std::sort(files.begin(), files.end());
  }
  scan.seconds = seconds_since(t0);
  return scan;
}

SourceScan scan_text_file(const std::string& path, const std::string& labels_file) {
  const auto t0 = std::chrono::steady_clock::now();
  std::ifstream f(path);
  if (!f) throw Error(fmt::format("cannot open {}", path));
  SourceScan scan;
  const fs::path base = fs::path(path).parent_path();
  std::string line;
  int line_no = 0;
  while (std::getline(f, line)) {
    ++line_no;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.find_last_of(" \t");
    int label = -1;
    if (sp != std::string::npos) {
      try {
        std::size_t used = 0;
        label = std::stoi(line.substr(sp + 1), &used);
        if (used != line.size() - sp - 1) label = -1;
      } catch (...) {
      }
    }
    if (label < 0 || label > 100000) {
      scan.failures.push_back({fmt::format("{}:{}", path, line_no), "expected '<path> <label>'", "crawl"});
      continue;
    }
    std::string loc = line.substr(0, line.find_last_not_of(" \t", sp) + 1);
    if (!is_http_url(loc) && fs::path(loc).is_relative()) loc = (base / loc).string();
    if (int(scan.images.size()) <= label) scan.images.resize(label + 1);
    scan.images[label].push_back(loc);
  }
  if (!labels_file.empty()) {
    std::ifstream lf(labels_file);
    if (!lf) throw Error(fmt::format("cannot open labels file {}", labels_file));
    while (std::getline(lf, line)) {
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
      if (!line.empty()) scan.class_names.push_back(line);
    }
    if (scan.class_names.size() < scan.images.size())
      throw Error(fmt::format("{} uses label {} but {} names only {} classes", path, scan.images.size() - 1,
                              labels_file, scan.class_names.size()));
    scan.images.resize(scan.class_names.size());
  } else {
    for (std::size_t i = 0; i < scan.images.size(); ++i) scan.class_names.push_back(std::to_string(i));
  }
  if (scan.images.empty()) throw Error(fmt::format("{} lists no images ('<path> <label>' lines)", path));
  scan.seconds = seconds_since(t0);
  return scan;
}

SourceScan scan_source(const std::string& source, const ScanOptions& opt) {
  if (is_http_url(source)) return crawl_http(source, opt);
  std::error_code ec;
  if (fs::is_directory(source, ec)) return scan_folder(source);
  if (fs::is_regular_file(source, ec)) return scan_text_file(source, opt.labels_file);
  throw Error(fmt::format("source '{}' is neither an http(s) URL, a folder nor a text file", source));
}

}  // namespace incept::data
