# meshwa.mk: build meshwa functions in C or C++ with Debian's clang (packages clang-16, lld-16,
# wasi-libc, libclang-rt-16-dev-wasm32; libc++-16-dev-wasm32 and libc++abi-16-dev-wasm32 for C++).
#
# In your Makefile:
#     MESHWA_SDK := path/to/sdk/c
#     include $(MESHWA_SDK)/meshwa.mk
#     my_function.wasm: my_function.c $(MESHWA_OBJS)
#     	$(MESHWA_CC) $(MESHWA_CFLAGS) $(MESHWA_LDFLAGS) -o $@ $^
#
# The result is a WASI preview1 core module that carries its WIT world; meshwa turns it into a
# component when it loads it (with the published preview1 adapter), so deploy the .wasm as it is.

MESHWA_CC ?= clang-16
MESHWA_CXX ?= clang++-16
# Where the SDK's own objects go (one copy per build directory).
MESHWA_BUILD ?= meshwa-sdk

MESHWA_CFLAGS ?= --target=wasm32-wasi -O2 -Wall -Wextra \
	-I$(MESHWA_SDK)/include -I$(MESHWA_SDK)/generated
# Debian keeps the wasm32 libc++ headers beside clang rather than in the wasi sysroot.
MESHWA_CXXFLAGS ?= $(MESHWA_CFLAGS) -fno-exceptions -isystem /usr/lib/llvm-16/include/wasm32-wasi/c++/v1
# A reactor (no main): the host calls the exported HTTP handler, once per fresh instance.
MESHWA_LDFLAGS ?= -mexec-model=reactor -Wl,--gc-sections

MESHWA_OBJS = $(MESHWA_BUILD)/meshwa.o $(MESHWA_BUILD)/http_function.o \
	$(MESHWA_SDK)/generated/http_function_component_type.o

$(MESHWA_BUILD)/meshwa.o: $(MESHWA_SDK)/src/meshwa.c $(MESHWA_SDK)/include/meshwa.h $(MESHWA_SDK)/generated/http_function.h
	@mkdir -p $(MESHWA_BUILD)
	$(MESHWA_CC) $(MESHWA_CFLAGS) -c -o $@ $<

# Generated code: compiled without the warnings meant for hand-written code.
$(MESHWA_BUILD)/http_function.o: $(MESHWA_SDK)/generated/http_function.c $(MESHWA_SDK)/generated/http_function.h
	@mkdir -p $(MESHWA_BUILD)
	$(MESHWA_CC) --target=wasm32-wasi -O2 -I$(MESHWA_SDK)/generated -c -o $@ $<
