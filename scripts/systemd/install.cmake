# Installs the systemd units and the environment file; run by `cmake --install`
# (install(SCRIPT) in CMakeLists.txt).  It runs at install time because the
# prefix is known only then (`cmake --install build --prefix P`): the units'
# ExecStart= and EnvironmentFile= are rewritten from the default prefix
# (/usr/local) to P.  VOLQ_PKG_SRC (the source tree's scripts/) and
# VOLQ_PKG_BUILD (a scratch folder) are set by the install(CODE) before it.
#
#   PREFIX/lib/systemd/system/volq-{scheduler,worker}.service
#   ENVDIR/volq.env    ENVDIR: /etc/volq when PREFIX is /usr, /etc/opt/NAME when
#                      PREFIX is /opt/NAME (FHS), else PREFIX/etc/volq
# A volq.env already there is kept; the new one goes beside it as volq.env.dist.

set(prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "(.)/+$" "\\1" prefix "${prefix}")
if(prefix MATCHES "[ \t\n\"'\\\\%$]")
  message(FATAL_ERROR "volq: install prefix \"${prefix}\" has a character systemd units "
                      "cannot take unquoted; choose another PREFIX")
endif()
if(prefix STREQUAL "/usr" OR prefix STREQUAL "/")
  set(envdir "/etc/volq")
elseif(prefix MATCHES "^/opt/[^/]+$")
  set(envdir "/etc${prefix}")
else()
  set(envdir "${prefix}/etc/volq")
endif()
if(prefix STREQUAL "/")
  set(prefix "")  # "/" + "/bin" must read /bin, not //bin
endif()

# Its own scratch folder: two installs from one build folder may run at once.
string(RANDOM LENGTH 12 tag)
set(scratch "${VOLQ_PKG_BUILD}/pkg-install-${tag}")
file(MAKE_DIRECTORY "${scratch}/units" "${scratch}/env")

foreach(unit volq-scheduler.service volq-worker.service)
  file(READ "${VOLQ_PKG_SRC}/systemd/${unit}" text)
  string(REPLACE "=-/usr/local/etc/volq/volq.env" "=-${envdir}/volq.env" text "${text}")
  string(REPLACE "=/usr/local/bin/" "=${prefix}/bin/" text "${text}")
  file(WRITE "${scratch}/units/${unit}" "${text}")
endforeach()
file(INSTALL DESTINATION "${prefix}/lib/systemd/system" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${scratch}/units/volq-scheduler.service" "${scratch}/units/volq-worker.service")
file(REMOVE_RECURSE "${scratch}")

# It may hold VOLQ_TOKEN and a Redis password: root only.
set(envname volq.env)
if(EXISTS "$ENV{DESTDIR}${envdir}/volq.env")
  file(READ "$ENV{DESTDIR}${envdir}/volq.env" old)
  file(READ "${VOLQ_PKG_SRC}/volq.env" new)
  if(NOT old STREQUAL new)
    set(envname volq.env.dist)
    message(STATUS "volq: keeping the edited ${envdir}/volq.env; the new one is volq.env.dist")
  endif()
endif()
file(INSTALL DESTINATION "${envdir}" TYPE FILE RENAME "${envname}"
     PERMISSIONS OWNER_READ OWNER_WRITE
     DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                           WORLD_READ WORLD_EXECUTE
     FILES "${VOLQ_PKG_SRC}/volq.env")
