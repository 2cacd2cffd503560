# FASTATTN_REPORT_PYTHON: the Python that runs the report package (bench/report/), i.e. Python 3
# with matplotlib (Debian: python3-matplotlib, installed for /usr/bin/python3 by
# scripts/install-deps.sh). The first python3 on PATH can be another one without it (pyenv, a
# virtualenv), so this takes the first of FindPython3's interpreter and /usr/bin/python3 that
# imports matplotlib. Set -DFASTATTN_REPORT_PYTHON=... to choose. Included by bench/ (the report
# target) and tests/ (the report tests).
include_guard(GLOBAL)

if(NOT FASTATTN_REPORT_PYTHON)
  find_package(Python3 COMPONENTS Interpreter)
  set(_fastattn_report_candidates)
  if(Python3_Interpreter_FOUND)
    list(APPEND _fastattn_report_candidates "${Python3_EXECUTABLE}")
  endif()
  list(APPEND _fastattn_report_candidates /usr/bin/python3)
  foreach(_py IN LISTS _fastattn_report_candidates)
    if(EXISTS "${_py}")
      execute_process(COMMAND "${_py}" -c "import matplotlib" RESULT_VARIABLE _rc
                      OUTPUT_QUIET ERROR_QUIET)
      if(_rc EQUAL 0)
        set(FASTATTN_REPORT_PYTHON "${_py}" CACHE FILEPATH
            "Python 3 with matplotlib that runs the benchmark report")
        break()
      endif()
    endif()
  endforeach()
  if(NOT FASTATTN_REPORT_PYTHON AND Python3_Interpreter_FOUND)
    # Keep the report target and tests: they fail with a message saying what to install.
    message(WARNING "No Python 3 with matplotlib found (tried: ${_fastattn_report_candidates}); "
                    "the report needs it: run scripts/install-deps.sh (python3-matplotlib) or "
                    "set -DFASTATTN_REPORT_PYTHON=<python3 with matplotlib>.")
    set(FASTATTN_REPORT_PYTHON "${Python3_EXECUTABLE}")
  endif()
endif()
