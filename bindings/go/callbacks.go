package strata

// The C-callable trampolines. A file with //export may only declare things
// in its preamble, so the helpers that install these live in strata.go.

/*
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// tokenCall is what strata_generate's user_data points at (through a cgo.Handle).
type tokenCall struct {
	fn    func(id uint32, text string) bool
	panic interface{}
}

//export goStrataToken
func goStrataToken(ud unsafe.Pointer, token C.uint32_t, text *C.char, n C.size_t) C.bool {
	call := cgo.Handle(uintptr(ud)).Value().(*tokenCall)
	if call.panic != nil {
		return false
	}
	goOn := false
	func() {
		// A panic must not unwind through the library: keep it, stop, and
		// re-panic once strata_generate has returned.
		defer func() {
			if r := recover(); r != nil {
				call.panic = r
			}
		}()
		goOn = call.fn(uint32(token), C.GoStringN(text, C.int(n)))
	}()
	return C.bool(goOn)
}

// progressCall is what strata_model_load's progress user_data points at.
type progressCall struct {
	fn    func(stage uint32, fraction float32) bool
	panic interface{}
}

//export goStrataProgress
func goStrataProgress(ud unsafe.Pointer, stage C.uint32_t, fraction C.float) C.bool {
	call := cgo.Handle(uintptr(ud)).Value().(*progressCall)
	goOn := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				call.panic = r
			}
		}()
		goOn = call.fn(uint32(stage), float32(fraction))
	}()
	return C.bool(goOn)
}
