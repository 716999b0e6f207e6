# The processor's normalization layer (pure: no I/O): vendor payloads -> samples / fetch jobs.
# Included by processor/CMakeLists.txt; tests/unit/processor links the same library.
add_library(auren_proc_norm STATIC
  ${CMAKE_CURRENT_LIST_DIR}/proc_norm.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_taxonomy.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_garmin.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_terra.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_app.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_whoop.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_oura.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_polar.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_fitbit.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_google_health.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_withings.c
  ${CMAKE_CURRENT_LIST_DIR}/proc_vendor_strava.c)
target_include_directories(auren_proc_norm PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(auren_proc_norm PUBLIC auren_common PkgConfig::JANSSON PkgConfig::OPENSSL m)
