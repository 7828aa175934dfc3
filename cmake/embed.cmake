# vq_embed(TARGET OUT PREFIX FILES...): writes OUT, a C file with one table
#   const struct vq_blob PREFIXfiles[] = {{"name", data, len}, ...}, {NULL,...}
# so that scripts and web assets ship inside the binaries.
function(vq_embed target out prefix)
  # A ";" list would reach the shell as command separators: pass it "|"-joined.
  string(REPLACE ";" "|" files "${ARGN}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DPREFIX=${prefix} "-DFILES=${files}"
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_run.cmake
    DEPENDS ${ARGN} ${CMAKE_SOURCE_DIR}/cmake/embed_run.cmake
    COMMENT "Embedding ${target}"
    VERBATIM)
endfunction()
