# Run by `cmake --install` (install(SCRIPT) in CMakeLists.txt): writes cnn.pc for the
# prefix actually installed to (cmake --install --prefix P, make install PREFIX=P), not
# the one configured, and installs it into LIBDIR/pkgconfig.
# In: CNN_PC_IN (cnn.pc.in configured but for the @CNN_PC_*@ below), CNN_PC_WORK (a
# folder of the build tree), CNN_LIBDIR, CNN_INCLUDEDIR, CNN_MODELSDIR (install dirs,
# relative to the prefix or absolute), CNN_SYSTEM_LIBDIRS (the directories the linker
# searches anyway).
function(cnn_pc_dir var dir rel_to_var)
  if(IS_ABSOLUTE "${dir}")
    set(${var} "${dir}" PARENT_SCOPE)
  else()
    set(${var} "\${${rel_to_var}}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

set(CNN_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
cnn_pc_dir(CNN_PC_LIBDIR "${CNN_LIBDIR}" exec_prefix)
cnn_pc_dir(CNN_PC_INCLUDEDIR "${CNN_INCLUDEDIR}" prefix)
cnn_pc_dir(CNN_PC_MODELSDIR "${CNN_MODELSDIR}" prefix)
# Programs linked with `pkg-config --libs cnn` find libcnn.so.0 at run time without
# LD_LIBRARY_PATH: the lib dir is in their run path unless it is a system one.
if(IS_ABSOLUTE "${CNN_LIBDIR}")
  set(libdir_full "${CNN_LIBDIR}")
else()
  set(libdir_full "${CMAKE_INSTALL_PREFIX}/${CNN_LIBDIR}")
endif()
set(CNN_PC_RPATH " -Wl,-rpath,\${libdir}")
foreach(d IN LISTS CNN_SYSTEM_LIBDIRS)
  get_filename_component(d "${d}" REALPATH)
  get_filename_component(l "${libdir_full}" REALPATH)
  if(d STREQUAL l)
    set(CNN_PC_RPATH "")
  endif()
endforeach()
# one file per prefix: installs to two prefixes at once do not write the same file
string(MD5 key "${CMAKE_INSTALL_PREFIX}")
configure_file("${CNN_PC_IN}" "${CNN_PC_WORK}/${key}/cnn.pc" @ONLY)
if(IS_ABSOLUTE "${CNN_LIBDIR}")
  set(dest "${CNN_LIBDIR}/pkgconfig")
else()
  set(dest "${CMAKE_INSTALL_PREFIX}/${CNN_LIBDIR}/pkgconfig")
endif()
file(INSTALL DESTINATION "${dest}" TYPE FILE FILES "${CNN_PC_WORK}/${key}/cnn.pc")
