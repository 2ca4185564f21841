//! Every family of instructions, register and memory forms, against the host CPU.

use super::harness::{assemble, compare};
use iced_x86::code_asm::*;

/// Compares each listed instruction (a `CodeAssembler` method call) on `$cases` random states.
macro_rules! against_host {
    ($cases:expr; $($m:ident($($arg:expr),*);)*) => {
        $(
            compare(
                stringify!($m($($arg),*)),
                &assemble(|a| a.$m($($arg),*)),
                0x5eed,
                $cases,
            );
        )*
    };
}

const N: usize = 64;

#[test]
fn float_arithmetic() {
    against_host! { N;
        addps(xmm1, xmm2); addps(xmm9, xmmword_ptr(rbx)); addpd(xmm1, xmm2);
        addpd(xmm3, xmmword_ptr(rbx + 16)); addss(xmm1, xmm2); addss(xmm1, dword_ptr(rbx + 4));
        addsd(xmm1, xmm15); addsd(xmm1, qword_ptr(rbx + 8));
        subps(xmm1, xmm2); subps(xmm1, xmmword_ptr(rbx)); subpd(xmm1, xmm2);
        subss(xmm1, xmm2); subsd(xmm1, qword_ptr(rbx));
        mulps(xmm1, xmm2); mulpd(xmm1, xmmword_ptr(rbx)); mulss(xmm1, xmm2); mulsd(xmm1, xmm2);
        divps(xmm1, xmm2); divpd(xmm1, xmm2); divss(xmm1, dword_ptr(rbx)); divsd(xmm1, xmm2);
        minps(xmm1, xmm2); minpd(xmm1, xmm2); minss(xmm1, xmm2); minsd(xmm1, qword_ptr(rbx));
        maxps(xmm1, xmmword_ptr(rbx)); maxpd(xmm1, xmm2); maxss(xmm1, xmm2); maxsd(xmm1, xmm2);
        sqrtps(xmm1, xmm2); sqrtpd(xmm1, xmmword_ptr(rbx)); sqrtss(xmm1, xmm2);
        sqrtsd(xmm1, xmm2); sqrtss(xmm1, dword_ptr(rbx + 12));
        rcpps(xmm1, xmm2); rcpss(xmm1, xmm2); rsqrtps(xmm1, xmmword_ptr(rbx));
        rsqrtss(xmm1, xmm2);
        andps(xmm1, xmm2); andpd(xmm1, xmmword_ptr(rbx)); andnps(xmm1, xmm2);
        andnpd(xmm1, xmm2); orps(xmm1, xmm2); orpd(xmm1, xmm2); xorps(xmm1, xmm1);
        xorpd(xmm1, xmmword_ptr(rbx + 32));
    }
}

#[test]
fn float_compares() {
    for p in 0..8 {
        against_host! { 24;
            cmpps(xmm1, xmm2, p); cmppd(xmm1, xmmword_ptr(rbx), p); cmpss(xmm1, xmm2, p);
            cmpsd_3(xmm1, qword_ptr(rbx), p); cmpsd_3(xmm4, xmm5, p);
        }
    }
    against_host! { N;
        comiss(xmm1, xmm2); comiss(xmm1, dword_ptr(rbx)); ucomiss(xmm1, xmm2);
        comisd(xmm1, xmm2); ucomisd(xmm1, qword_ptr(rbx + 8)); ucomisd(xmm1, xmm2);
    }
}

#[test]
fn conversions() {
    against_host! { N;
        cvtps2pd(xmm1, xmm2); cvtps2pd(xmm1, qword_ptr(rbx)); cvtpd2ps(xmm1, xmm2);
        cvtpd2ps(xmm1, xmmword_ptr(rbx)); cvtss2sd(xmm1, xmm2); cvtss2sd(xmm1, dword_ptr(rbx));
        cvtsd2ss(xmm1, xmm2); cvtsd2ss(xmm1, qword_ptr(rbx)); cvtdq2ps(xmm1, xmm2);
        cvtps2dq(xmm1, xmm2); cvttps2dq(xmm1, xmmword_ptr(rbx)); cvtdq2pd(xmm1, xmm2);
        cvtdq2pd(xmm1, qword_ptr(rbx)); cvtpd2dq(xmm1, xmm2); cvttpd2dq(xmm1, xmm2);
        cvtpi2ps(xmm1, mm2); cvtpi2ps(xmm1, qword_ptr(rbx)); cvtps2pi(mm1, xmm2);
        cvtps2pi(mm1, qword_ptr(rbx)); cvttps2pi(mm1, xmm2); cvtpi2pd(xmm1, mm2);
        cvtpi2pd(xmm1, qword_ptr(rbx)); cvtpd2pi(mm1, xmm2); cvtpd2pi(mm1, xmmword_ptr(rbx));
        cvttpd2pi(mm7, xmm2);
        cvtsi2ss(xmm1, eax); cvtsi2ss(xmm1, rax); cvtsi2ss(xmm1, dword_ptr(rbx));
        cvtsi2ss(xmm1, qword_ptr(rbx)); cvtsi2sd(xmm1, edx); cvtsi2sd(xmm1, rdx);
        cvtsi2sd(xmm1, qword_ptr(rbx + 8));
        cvtss2si(eax, xmm1); cvtss2si(rax, xmm1); cvtss2si(rcx, dword_ptr(rbx));
        cvttss2si(eax, xmm1); cvttss2si(rdx, xmm1); cvtsd2si(eax, xmm1); cvtsd2si(rax, xmm1);
        cvtsd2si(ecx, qword_ptr(rbx)); cvttsd2si(eax, xmm1); cvttsd2si(rax, qword_ptr(rbx));
    }
}

#[test]
fn moves() {
    against_host! { 16;
        movaps(xmm1, xmm2); movaps(xmm1, xmmword_ptr(rbx)); movaps(xmmword_ptr(rbx + 16), xmm3);
        movapd(xmm1, xmm2); movupd(xmmword_ptr(rbx + 3), xmm3); movups(xmm1, xmmword_ptr(rbx + 5));
        movups(xmmword_ptr(rbx + 1), xmm1); movupd(xmm1, xmmword_ptr(rbx + 7));
        movdqa(xmm1, xmmword_ptr(rbx + 32)); movdqa(xmmword_ptr(rbx), xmm12);
        movdqu(xmm1, xmmword_ptr(rbx + 9)); movdqu(xmmword_ptr(rbx + 9), xmm1);
        movss(xmm1, xmm2); movss(xmm1, dword_ptr(rbx + 4)); movss(dword_ptr(rbx + 4), xmm1);
        movsd_2(xmm1, xmm2); movsd_2(xmm1, qword_ptr(rbx)); movsd_2(qword_ptr(rbx + 2), xmm1);
        movlps(xmm1, qword_ptr(rbx)); movlps(qword_ptr(rbx + 8), xmm1);
        movhps(xmm1, qword_ptr(rbx)); movhps(qword_ptr(rbx + 8), xmm1);
        movlpd(xmm1, qword_ptr(rbx)); movlpd(qword_ptr(rbx), xmm1);
        movhpd(xmm1, qword_ptr(rbx)); movhpd(qword_ptr(rbx), xmm1);
        movlhps(xmm1, xmm2); movhlps(xmm1, xmm2);
        movd(xmm1, eax); movd(xmm1, dword_ptr(rbx)); movd(eax, xmm1); movd(dword_ptr(rbx), xmm1);
        movq(xmm1, rax); movq(rcx, xmm1); movq(xmm1, xmm2); movq(xmm1, qword_ptr(rbx));
        movq(qword_ptr(rbx), xmm1);
        movd(mm1, eax); movd(mm1, dword_ptr(rbx)); movd(eax, mm1); movd(dword_ptr(rbx), mm2);
        movq(mm1, rax); movq(rax, mm1); movq(mm1, mm2); movq(mm1, qword_ptr(rbx));
        movq(qword_ptr(rbx), mm1);
        movntps(xmmword_ptr(rbx), xmm1); movntpd(xmmword_ptr(rbx + 16), xmm1);
        movntdq(xmmword_ptr(rbx), xmm1); movnti(dword_ptr(rbx), eax);
        movnti(qword_ptr(rbx), rax); movntq(qword_ptr(rbx), mm3);
        movmskps(eax, xmm1); movmskps(rax, xmm1); movmskpd(ecx, xmm1); pmovmskb(eax, xmm1);
        pmovmskb(eax, mm1); maskmovq(mm1, mm2); maskmovdqu(xmm1, xmm2);
        movq2dq(xmm1, mm2); movdq2q(mm1, xmm2);
        emms();
    }
}

#[test]
fn integer_mmx_and_xmm() {
    against_host! { 24;
        paddb(mm1, mm2); paddb(xmm1, xmm2); paddw(mm1, qword_ptr(rbx)); paddw(xmm1, xmm2);
        paddd(mm1, mm2); paddd(xmm1, xmmword_ptr(rbx)); paddq(mm1, mm2); paddq(xmm1, xmm2);
        paddsb(mm1, mm2); paddsb(xmm1, xmm2); paddsw(mm1, mm2); paddsw(xmm1, xmm2);
        paddusb(mm1, mm2); paddusb(xmm1, xmm2); paddusw(mm1, mm2); paddusw(xmm1, xmm2);
        psubb(mm1, mm2); psubb(xmm1, xmm2); psubw(mm1, mm2); psubw(xmm1, xmm2);
        psubd(mm1, mm2); psubd(xmm1, xmm2); psubq(mm1, mm2); psubq(xmm1, xmm2);
        psubsb(mm1, mm2); psubsb(xmm1, xmm2); psubsw(mm1, mm2); psubsw(xmm1, xmm2);
        psubusb(mm1, mm2); psubusb(xmm1, xmm2); psubusw(mm1, mm2); psubusw(xmm1, xmm2);
        pmullw(mm1, mm2); pmullw(xmm1, xmm2); pmulhw(mm1, mm2); pmulhw(xmm1, xmm2);
        pmulhuw(mm1, mm2); pmulhuw(xmm1, xmm2); pmuludq(mm1, mm2); pmuludq(xmm1, xmm2);
        pmaddwd(mm1, mm2); pmaddwd(xmm1, xmm2); pavgb(mm1, mm2); pavgb(xmm1, xmm2);
        pavgw(mm1, mm2); pavgw(xmm1, xmm2); pminub(mm1, mm2); pminub(xmm1, xmm2);
        pmaxub(mm1, mm2); pmaxub(xmm1, xmm2); pminsw(mm1, mm2); pminsw(xmm1, xmm2);
        pmaxsw(mm1, mm2); pmaxsw(xmm1, xmm2); psadbw(mm1, mm2); psadbw(xmm1, xmm2);
        pcmpeqb(mm1, mm2); pcmpeqb(xmm1, xmm1); pcmpeqw(mm1, mm1); pcmpeqw(xmm1, xmm2);
        pcmpeqd(mm1, mm2); pcmpeqd(xmm1, xmm2); pcmpgtb(mm1, mm2); pcmpgtb(xmm1, xmm2);
        pcmpgtw(mm1, mm2); pcmpgtw(xmm1, xmm2); pcmpgtd(mm1, mm2); pcmpgtd(xmm1, xmm2);
        pand(mm1, mm2); pand(xmm1, xmm2); pandn(mm1, mm2); pandn(xmm1, xmm2);
        por(mm1, mm2); por(xmm1, xmm2); pxor(mm1, mm2); pxor(xmm1, xmm2);
        packsswb(mm1, mm2); packsswb(xmm1, xmm2); packssdw(mm1, mm2); packssdw(xmm1, xmm2);
        packuswb(mm1, mm2); packuswb(xmm1, xmmword_ptr(rbx));
        punpcklbw(mm1, mm2); punpcklbw(xmm1, xmm2); punpcklwd(mm1, dword_ptr(rbx));
        punpcklwd(xmm1, xmm2); punpckldq(mm1, mm2); punpckldq(xmm1, xmm2);
        punpcklqdq(xmm1, xmm2); punpckhbw(mm1, mm2); punpckhbw(xmm1, xmm2);
        punpckhwd(mm1, mm2); punpckhwd(xmm1, xmm2); punpckhdq(mm1, mm2);
        punpckhdq(xmm1, xmm2); punpckhqdq(xmm1, xmmword_ptr(rbx));
        unpcklps(xmm1, xmm2); unpckhps(xmm1, xmm2); unpcklpd(xmm1, xmm2);
        unpckhpd(xmm1, xmmword_ptr(rbx));
    }
}

#[test]
fn shifts() {
    against_host! { 24;
        psllw(mm1, mm2); psllw(xmm1, xmm2); pslld(mm1, qword_ptr(rbx)); pslld(xmm1, xmm2);
        psllq(mm1, mm2); psllq(xmm1, xmmword_ptr(rbx)); psrlw(mm1, mm2); psrlw(xmm1, xmm2);
        psrld(mm1, mm2); psrld(xmm1, xmm2); psrlq(mm1, mm2); psrlq(xmm1, xmm2);
        psraw(mm1, mm2); psraw(xmm1, xmm2); psrad(mm1, mm2); psrad(xmm1, xmm2);
    }
    for n in [0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 200] {
        against_host! { 4;
            psllw(mm1, n); psllw(xmm1, n); pslld(mm1, n); pslld(xmm1, n); psllq(mm1, n);
            psllq(xmm1, n); psrlw(mm1, n); psrlw(xmm1, n); psrld(mm1, n); psrld(xmm1, n);
            psrlq(mm1, n); psrlq(xmm1, n); psraw(mm1, n); psraw(xmm1, n); psrad(mm1, n);
            psrad(xmm1, n); pslldq(xmm1, n); psrldq(xmm1, n);
        }
    }
}

#[test]
fn shuffles_and_words() {
    for imm in [0x00, 0x1b, 0x4e, 0xe4, 0xff, 0x93, 0x05, 0xa2] {
        against_host! { 4;
            pshufd(xmm1, xmm2, imm); pshufd(xmm1, xmmword_ptr(rbx), imm);
            pshufhw(xmm1, xmm2, imm); pshuflw(xmm1, xmm2, imm); pshufw(mm1, mm2, imm);
            pshufw(mm1, qword_ptr(rbx), imm); shufps(xmm1, xmm2, imm);
            shufps(xmm1, xmmword_ptr(rbx), imm); shufpd(xmm1, xmm2, imm);
            pextrw(eax, xmm1, imm); pextrw(rax, mm1, imm); pinsrw(xmm1, ecx, imm);
            pinsrw(mm1, word_ptr(rbx), imm); pinsrw(mm1, eax, imm);
        }
    }
}

#[test]
fn control_register() {
    against_host! { 8;
        stmxcsr(dword_ptr(rbx + 4));
    }
}
