# A stand-in for Windows' bcryptprimitives.dll, for Wine 8 only.
#
# Go 1.22+ programs call ProcessPrng from bcryptprimitives.dll at start;
# Wine 8.0 does not ship that DLL, so every Go .exe dies before main. This
# exports ProcessPrng(PBYTE data, SIZE_T len) on top of advapi32's
# SystemFunction036 (RtlGenRandom), which takes at most a ULONG per call,
# so it fills data in chunks of 1 GiB. It returns TRUE, or FALSE if
# RtlGenRandom fails. packaging/wine/smoke.sh assembles it; nothing here
# ships to a real Windows host, which has the real DLL.
#
# Win64 calling convention: data in %rcx, len in %rdx; %rsi and %rdi are
# callee-saved (pushed here), and the call needs 32 bytes of shadow space
# and a 16-byte aligned stack (8 return address + 16 pushed + 40 = 64).
	.text
	.globl	ProcessPrng
ProcessPrng:
	push	%rsi
	push	%rdi
	sub	$40, %rsp
	mov	%rcx, %rsi		# next byte to fill
	mov	%rdx, %rdi		# bytes left
1:	test	%rdi, %rdi
	jz	2f
	mov	$0x40000000, %edx	# this call's length: min(left, 1 GiB)
	cmp	%rdx, %rdi
	cmovb	%rdi, %rdx
	mov	%rsi, %rcx
	add	%rdx, %rsi
	sub	%rdx, %rdi
	call	*__imp_SystemFunction036(%rip)
	test	%al, %al
	jnz	1b
	xor	%eax, %eax		# RtlGenRandom failed: FALSE
	jmp	3f
2:	mov	$1, %eax		# TRUE
3:	add	$40, %rsp
	pop	%rdi
	pop	%rsi
	ret

# DllMain(hinst, reason, reserved): nothing to set up; TRUE.
	.globl	DllMain
DllMain:
	mov	$1, %eax
	ret
