# Writes OUT (a header defining INCEPT_GIT_COMMIT) from `git describe` of SRC, at build time,
# rewriting it only when the commit changed so that nothing rebuilds needlessly.
execute_process(COMMAND git describe --always --dirty --abbrev=10 WORKING_DIRECTORY ${SRC}
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit unknown)
endif()
set(text "// Generated at build time by tools/cmake/git_commit.cmake.\n#pragma once\n#define INCEPT_GIT_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
