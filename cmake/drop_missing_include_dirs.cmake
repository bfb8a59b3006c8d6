# The PyPI ROS wheels export targets whose INTERFACE_INCLUDE_DIRECTORIES name the build farm's
# Python include dir (/opt/python/...), which does not exist here and makes CMake's generate
# step fail. Call this at the end of a CMakeLists.txt: it drops include dirs that do not exist
# from the targets imported in that directory; on a regular ROS install nothing changes.
function(drop_missing_include_dirs)
  get_property(_imported DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _imported)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs)
      set(_kept "")
      foreach(_dir IN LISTS _dirs)
        if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
          list(APPEND _kept "${_dir}")
        endif()
      endforeach()
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
    endif()
  endforeach()
endfunction()
