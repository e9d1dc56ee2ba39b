# Checks a linked kernel set (cmake -DOBJECT=... -DREADELF=... -P check_kernel_set.cmake):
# - its only global definition is its table getter, so nothing of it can replace, or be replaced
#   by, a definition of the same name in another set or in the common code;
# - it holds no static initialisers: those run at import on every CPU, whatever set is chosen
#   (unless ALLOW_STATIC_INIT: sanitizer builds add constructors that register each object).
if(NOT READELF)
  return()
endif()
execute_process(COMMAND ${READELF} -sW ${OBJECT} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf failed on ${OBJECT}")
endif()
string(REPLACE "\n" ";" lines "${symbols}")
foreach(line IN LISTS lines)
  # Num: Value Size Type Bind Vis Ndx Name
  if(line MATCHES "^ *[0-9]+: +[0-9a-f]+ +[0-9a-fx]+ +[A-Z_]+ +(GLOBAL|WEAK|UNIQUE) +[A-Z_]+ +([A-Z0-9]+) +(.*)$")
    set(index "${CMAKE_MATCH_2}")
    set(name "${CMAKE_MATCH_3}")
    if(NOT index STREQUAL "UND" AND NOT name MATCHES "^convkern_cpu_kernels_")
      message(FATAL_ERROR "${OBJECT}: ${name} is still a global definition")
    endif()
  endif()
endforeach()
execute_process(COMMAND ${READELF} -SW ${OBJECT} OUTPUT_VARIABLE sections)
if(NOT ALLOW_STATIC_INIT AND sections MATCHES "\\.init_array|\\.ctors")
  message(FATAL_ERROR "${OBJECT} has static initialisers: they would run on every CPU at import")
endif()
