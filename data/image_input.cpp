// Image sources for classify (image_input.h).
#include "data/image_input.h"

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "data/url.h"
#include "engine/check.h"

namespace incept::data {

std::vector<std::string> read_image_sources(const std::vector<std::string>& sources,
                                            const HttpOptions& http) {
  std::vector<std::string> out(sources.size());
  // One fetcher per host: redirects stay on the host a URL names.
  std::map<std::string, std::unique_ptr<HttpFetcher>> fetchers;
  std::size_t pending = 0;
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const std::string& s = sources[i];
    if (!is_http_url(s)) {
      std::ifstream f(s, std::ios::binary);
      if (!f) throw Error(fmt::format("{}: cannot open the image", s));
      std::ostringstream b;
      b << f.rdbuf();
      out[i] = b.str();
      continue;
    }
    const std::optional<Url> u = parse_url(s);
    if (!u) throw Error(fmt::format("{}: not a valid http(s) URL", s));
    Url root = *u;
    root.path.assign(1, '/');  // (not = "/": GCC 12 -Wrestrict false positive)
    root.query.clear();
    auto& f = fetchers[root.str()];
    if (!f) f = std::make_unique<HttpFetcher>(http, root);
    f->submit(s, i);
    ++pending;
  }
  for (auto& [host, f] : fetchers) {
    f->close();
    FetchResult r;
    while (f->next(&r)) {
      if (!r.ok()) throw Error(fmt::format("{}: {}", r.url, r.error));
      out[r.tag] = std::move(r.body);
      --pending;
    }
  }
  if (pending != 0) throw Error("some image downloads did not finish");
  return out;
}

}  // namespace incept::data
