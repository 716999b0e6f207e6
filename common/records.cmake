# Avro record codec (common/src/records.c): embeds the schemas/ .avsc files into auren_common.
#
# Included from common/CMakeLists.txt after add_library(auren_common ...). The same file also
# runs in script mode (cmake -P) at build time to turn the .avsc texts into a C source, so
# schemas/ stays the single source and editing a schema rebuilds the library.

if(CMAKE_SCRIPT_MODE_FILE)
    # Script mode: -DSCHEMA_DIR=... -DOUT=...
    set(body "/* Generated from the schemas/ .avsc files by common/records.cmake. */\n")
    string(APPEND body "#include <stddef.h>\n\n")
    foreach(name raw_webhook biometric_event fetch_job dead_letter)
        file(READ "${SCHEMA_DIR}/${name}.v1.avsc" hex HEX)
        string(LENGTH "${hex}" hexlen)
        math(EXPR nbytes "${hexlen} / 2")
        string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
        string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)"
               "\\1\n    " bytes "${bytes}")
        string(APPEND body "extern const char cm_records_avsc_${name}[];\n")
        string(APPEND body "extern const size_t cm_records_avsc_${name}_len;\n")
        string(APPEND body "const char cm_records_avsc_${name}[] = {\n    ${bytes}0x00\n};\n")
        string(APPEND body "const size_t cm_records_avsc_${name}_len = ${nbytes};\n\n")
    endforeach()
    # Only rewrite on change so dependants do not rebuild needlessly.
    if(EXISTS "${OUT}")
        file(READ "${OUT}" old)
    else()
        set(old "")
    endif()
    if(NOT old STREQUAL body)
        file(WRITE "${OUT}" "${body}")
    endif()
    return()
endif()

get_filename_component(CM_RECORDS_SCHEMA_DIR "${CMAKE_CURRENT_LIST_DIR}/../schemas" ABSOLUTE)
set(CM_RECORDS_SCHEMAS
    "${CM_RECORDS_SCHEMA_DIR}/raw_webhook.v1.avsc"
    "${CM_RECORDS_SCHEMA_DIR}/biometric_event.v1.avsc"
    "${CM_RECORDS_SCHEMA_DIR}/fetch_job.v1.avsc"
    "${CM_RECORDS_SCHEMA_DIR}/dead_letter.v1.avsc")
set(CM_RECORDS_GENERATED "${CMAKE_CURRENT_BINARY_DIR}/records_schemas.c")

add_custom_command(
    OUTPUT "${CM_RECORDS_GENERATED}"
    COMMAND "${CMAKE_COMMAND}" -DSCHEMA_DIR=${CM_RECORDS_SCHEMA_DIR} -DOUT=${CM_RECORDS_GENERATED}
            -P "${CMAKE_CURRENT_LIST_FILE}"
    DEPENDS ${CM_RECORDS_SCHEMAS} "${CMAKE_CURRENT_LIST_FILE}"
    COMMENT "Embedding Avro schemas"
    VERBATIM)

target_sources(auren_common PRIVATE
    "${CMAKE_CURRENT_LIST_DIR}/src/records.c"
    "${CMAKE_CURRENT_LIST_DIR}/src/avro_canonical.c"
    "${CM_RECORDS_GENERATED}")
target_link_libraries(auren_common PRIVATE PkgConfig::AVRO PkgConfig::JANSSON Threads::Threads)
