// URL resolution and directory-listing parsing on the HTML that nginx, Apache and Python's
// http.server really produce (formats copied from those servers), plus hostile links.
#include <gtest/gtest.h>

#include "data/html_listing.h"
#include "data/url.h"

namespace incept::data {
namespace {

Url U(const std::string& s) {
  return parse_url(s).value();
}

TEST(IngestListing, UrlParseAndResolve) {
  const Url base = U("http://Host:8080/imagenet/train/n01440764/");
  EXPECT_EQ(base.host, "host");
  EXPECT_EQ(base.port, 8080);
  EXPECT_EQ(resolve_url(base, "a.JPEG")->str(), "http://host:8080/imagenet/train/n01440764/a.JPEG");
  EXPECT_EQ(resolve_url(base, "sub/")->str(), "http://host:8080/imagenet/train/n01440764/sub/");
  EXPECT_EQ(resolve_url(base, "../")->str(), "http://host:8080/imagenet/train/");
  EXPECT_EQ(resolve_url(base, "/x/y.jpg")->str(), "http://host:8080/x/y.jpg");
  EXPECT_EQ(resolve_url(base, "//other/z.jpg")->str(), "http://other/z.jpg");
  EXPECT_EQ(resolve_url(base, "a%20b.jpg#frag")->str(),
            "http://host:8080/imagenet/train/n01440764/a%20b.jpg");
  EXPECT_EQ(resolve_url(base, "?C=N;O=D")->query, "C=N;O=D");
  EXPECT_FALSE(resolve_url(base, "mailto:x@y"));
  EXPECT_FALSE(resolve_url(base, "javascript:alert(1)"));
  EXPECT_EQ(U("https://h/").port, 443);
  EXPECT_EQ(percent_decode("Ankle_boot%2Fx%20y"), "Ankle_boot/x y");
  EXPECT_TRUE(has_dotdot_segment("a/../b"));
  EXPECT_FALSE(has_dotdot_segment("a/..b/c"));
  EXPECT_TRUE(url_within(U("http://host:8080/imagenet/train/x.jpg"), U("http://host:8080/imagenet/train/")));
  EXPECT_FALSE(url_within(U("http://host:8080/imagenet/val/x.jpg"), U("http://host:8080/imagenet/train/")));
  EXPECT_FALSE(url_within(U("http://host:8081/imagenet/train/x.jpg"), U("http://host:8080/imagenet/train/")));
}

TEST(IngestListing, Nginx) {
  const std::string html = R"(<html>
<head><title>Index of /imagenet/train/</title></head>
<body>
<h1>Index of /imagenet/train/</h1><hr><pre><a href="../">../</a>
<a href="n01440764/">n01440764/</a>                                         26-Nov-2026 11:02                   -
<a href="n01443537/">n01443537/</a>                                         26-Nov-2026 11:02                   -
<a href="Ankle_boot%20x/">Ankle_boot x/</a>                                26-Nov-2026 11:02                   -
<a href="readme.txt">readme.txt</a>                                         26-Nov-2026 11:02                  12
</pre><hr></body>
</html>)";
  const Url page = U("http://127.0.0.1:9/imagenet/train/");
  const Listing l = parse_listing(page, page, html);
  EXPECT_TRUE(l.is_listing);
  ASSERT_EQ(l.dirs.size(), 3u);
  EXPECT_EQ(l.dirs[0].name, "n01440764");
  EXPECT_EQ(l.dirs[2].name, "Ankle_boot x");
  ASSERT_EQ(l.files.size(), 1u);
  EXPECT_TRUE(l.refused.empty());
}

TEST(IngestListing, Apache) {
  // mod_autoindex with FancyIndexing: icons, sort links, a parent link by absolute path,
  // attributes in single quotes and upper case, several links per line.
  const std::string html = R"(<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of /imagenet/train/n01440764</title>
 </head>
 <body>
<h1>Index of /imagenet/train/n01440764</h1>
  <table>
   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th><th><a href="?C=S;O=A">Size</a></th></tr>
   <tr><th colspan="5"><hr></th></tr>
<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="/imagenet/train/">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td></tr>
<tr><td valign="top"><A HREF='n01440764_10026.JPEG'><img src="/icons/image2.gif" alt="[IMG]"></A></td><td><a href="n01440764_10026.JPEG">n01440764_10026.JPEG</a></td><td align="right">2012-06-15 10:19  </td><td align="right"> 13K</td></tr>
<tr><td valign="top"><img src="/icons/image2.gif" alt="[IMG]"></td><td><a href=n01440764_10027.JPEG>n01440764_10027.JPEG</a></td><td align="right">2012-06-15 10:19  </td><td align="right"> 95K</td></tr>
<!-- <a href="commented_out.jpg">x</a> -->
<tr><td valign="top"><img src="/icons/folder.gif" alt="[DIR]"></td><td><a href="extra%20shots/">extra shots/</a></td><td align="right">2012-06-15 10:19  </td><td align="right">  - </td></tr>
   <tr><th colspan="5"><hr></th></tr>
</table>
<address>Apache/2.4.57 (Debian) Server at 127.0.0.1 Port 80</address>
</body></html>)";
  const Url root = U("http://127.0.0.1/imagenet/train/");
  const Url page = U("http://127.0.0.1/imagenet/train/n01440764/");
  const Listing l = parse_listing(page, root, html);
  EXPECT_TRUE(l.is_listing);
  ASSERT_EQ(l.files.size(), 2u);
  EXPECT_EQ(l.files[0].name, "n01440764_10026.JPEG");
  EXPECT_EQ(l.files[1].name, "n01440764_10027.JPEG");
  ASSERT_EQ(l.dirs.size(), 1u);
  EXPECT_EQ(l.dirs[0].name, "extra shots");
  EXPECT_TRUE(l.refused.empty()) << l.refused[0].first;
}

TEST(IngestListing, PythonHttpServer) {
  const std::string html = R"(<!DOCTYPE HTML>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Directory listing for /</title>
</head>
<body>
<h1>Directory listing for /</h1>
<hr>
<ul>
<li><a href="Ankle_boot/">Ankle_boot/</a></li>
<li><a href="T-shirt_top/">T-shirt_top/</a></li>
<li><a href="caf%C3%A9%20%26%20bar/">caf&#233; &amp; bar/</a></li>
<li><a href="a&amp;b.png">a&amp;b.png</a></li>
</ul>
<hr>
</body>
</html>)";
  const Url page = U("http://127.0.0.1:8000/");
  const Listing l = parse_listing(page, page, html);
  EXPECT_TRUE(l.is_listing);
  ASSERT_EQ(l.dirs.size(), 3u);
  EXPECT_EQ(l.dirs[2].name, "caf\xC3\xA9 & bar");
  ASSERT_EQ(l.files.size(), 1u);
  EXPECT_EQ(l.files[0].name, "a&b.png");
  EXPECT_EQ(l.files[0].url.str(), "http://127.0.0.1:8000/a&b.png");
}

TEST(IngestListing, HostileLinksAreRefusedAndNotAListingIsDetected) {
  const std::string html = R"(<html><head><title>Index of /data/cat/</title>
<script>var s = '<a href="script.jpg">';</script></head><body>
<a href="ok.jpg">ok</a>
<a href="http://evil.example/x.jpg">other host</a>
<a href="http://127.0.0.1:81/data/cat/x.jpg">other port</a>
<a href="/etc/passwd.jpg">absolute outside</a>
<a href="sub/../../../secret.jpg">dotdot</a>
<a href="%2e%2e/%2e%2e/x.jpg">encoded dotdot</a>
<a href="mailto:a@b">mail</a>
</body></html>)";
  const Url root = U("http://127.0.0.1/data/");
  const Url page = U("http://127.0.0.1/data/cat/");
  const Listing l = parse_listing(page, root, html);
  EXPECT_TRUE(l.is_listing);
  ASSERT_EQ(l.files.size(), 1u);
  EXPECT_EQ(l.files[0].name, "ok.jpg");
  ASSERT_EQ(l.refused.size(), 5u);
  EXPECT_NE(l.refused[0].second.find("leaves the start URL"), std::string::npos);
  EXPECT_NE(l.refused[3].second.find(".."), std::string::npos);
  EXPECT_NE(l.refused[4].second.find(".."), std::string::npos);

  const Listing not_listing = parse_listing(page, root,
                                            "<html><head><title>Welcome</title></head><body><p>Login</p>"
                                            "<a href=\"https://login.example/\">sign in</a></body></html>");
  EXPECT_FALSE(not_listing.is_listing);
}

}  // namespace
}  // namespace incept::data
