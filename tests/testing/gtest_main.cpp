// The main() of every test program (linked instead of GoogleTest's gtest_main). It turns the
// run's outcome into an exit status that CTest reports honestly (SKIP_RETURN_CODE 77):
//   0   at least one test ran and every test that ran passed;
//   77  every test that ran was skipped and none failed or passed ("nothing ran": GPU tests
//       on a machine without a GPU, a case whose tool is not installed). CTest: "Skipped";
//   1   a test failed (even if others printed "skipped"), no test matched the filter, or
//       skips and passes were mixed in one run: CTest would say "Passed" and hide the skip,
//       so such cases must be registered as their own CTest entry (SEPARATE in
//       tests/CMakeLists.txt) or made to run.
// Every skipped test is listed as "incept: skipped <Suite.Case>: <reason>" (tools/run_tests.sh
// collects these lines from CTest's log).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

constexpr int kExitSkipped = 77;

// The message of the first skip recorded in r, on one line; empty if none.
std::string skip_message(const ::testing::TestResult& r) {
  for (int i = 0; i < r.total_part_count(); ++i) {
    const ::testing::TestPartResult& part = r.GetTestPartResult(i);
    if (!part.skipped()) continue;
    std::string m = part.message();
    for (char& c : m)
      if (c == '\n') c = ' ';
    while (!m.empty() && m.back() == ' ') m.pop_back();
    return m.empty() ? "(no reason given)" : m;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  if (GTEST_FLAG_GET(list_tests)) return rc;

  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  int passed = 0, failed = 0;
  std::vector<std::string> skipped;
  for (int s = 0; s < unit.total_test_suite_count(); ++s) {
    const ::testing::TestSuite& suite = *unit.GetTestSuite(s);
    for (int t = 0; t < suite.total_test_count(); ++t) {
      const ::testing::TestInfo& info = *suite.GetTestInfo(t);
      if (!info.should_run()) continue;
      const ::testing::TestResult& r = *info.result();
      const std::string name = std::string(suite.name()) + "." + info.name();
      if (r.Failed()) {
        ++failed;
      } else if (r.Skipped()) {
        std::string why = skip_message(r);
        if (why.empty()) why = skip_message(suite.ad_hoc_test_result());  // skipped in SetUpTestSuite
        skipped.push_back(name + ": " + (why.empty() ? "(no reason given)" : why));
      } else {
        ++passed;
      }
    }
  }
  for (const std::string& s : skipped) std::printf("incept: skipped %s\n", s.c_str());

  if (rc != 0 || failed > 0) {
    std::printf("incept: %d test(s) failed\n", failed);
    return rc != 0 ? rc : 1;
  }
  if (passed == 0 && skipped.empty()) {
    std::printf("incept: no test ran (does the filter name a test that exists?)\n");
    return 1;
  }
  if (passed == 0) {
    std::printf("incept: all %zu test(s) skipped: exit status %d (CTest reports \"Skipped\")\n",
                skipped.size(), kExitSkipped);
    return kExitSkipped;
  }
  if (!skipped.empty()) {
    std::printf(
        "incept: %zu test(s) skipped while %d passed in one run: CTest would report \"Passed\" and hide the "
        "skip. Register each skipping case as its own CTest entry (incept_test(... SEPARATE Suite.Case) in "
        "tests/CMakeLists.txt) or make it run.\n",
        skipped.size(), passed);
    return 1;
  }
  return 0;
}
