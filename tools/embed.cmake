# embed.cmake - a file as a C byte array, at build time (no file is looked up
# at run time). The heaptap command's page template (cli/report.html) goes
# into the program this way:
#   cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed.cmake
# defines `const unsigned char NAME[]` (with a 0 byte after the content) and
# `const size_t NAME_len` (the content's length).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR len "${digits} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
get_filename_component(base "${IN}" NAME)
file(WRITE "${OUT}.tmp"
  "/* Generated from ${base} by tools/embed.cmake: do not edit. */\n"
  "#include <stddef.h>\n"
  "extern const unsigned char ${NAME}[];\n"
  "extern const size_t ${NAME}_len;\n"
  "const unsigned char ${NAME}[] = {\n${body}0x00};\n"
  "const size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
