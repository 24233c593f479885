# Command-line tools for the classic baselines in hific_tf/evaluation/classic_codecs.py (Debian/Ubuntu):
#   libjxl-tools      cjxl, djxl                 JPEG XL
#   libheif-examples  heif-enc, heif-convert     HEVC intra in HEIF (x265 / libde265), for BPG
# Debian 12's libheif has x265 and libde265 built in; later releases ship them as plugins,
# which are added where apt knows them. Runs apt-get as root, or through sudo otherwise.
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)
CODEC_TOOL_PACKAGES := libjxl-tools libheif-examples

.PHONY: codec-tools
codec-tools:
	$(SUDO) apt-get update
	$(SUDO) apt-get install -y --no-install-recommends $(CODEC_TOOL_PACKAGES) \
	    $$(apt-cache show libheif-plugin-x265 >/dev/null 2>&1 \
	       && echo libheif-plugin-x265 libheif-plugin-libde265)
	cjxl --version
	heif-enc --list-encoders | grep -q x265
