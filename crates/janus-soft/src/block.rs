//! Decoded blocks: runs of instructions decoded once and executed many times.
//!
//! A block is keyed by the guest-physical address of its first byte and the code bitness, so
//! the same code mapped at several virtual addresses (or in several processes) is decoded
//! once; branch targets and RIP-relative operands are kept relative, so a block runs at any
//! virtual address. A jump cache keyed by linear PC and privilege skips the page walk for hot
//! entries. Writes to a page holding blocks (self-modifying code, page reuse, DMA) invalidate
//! every block on that page.

use crate::core::{Cpu, Stop};
use crate::cpu::CS;
use crate::decode;
use crate::exec::Insn;
use crate::mmu::TLB_SIZE;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};
use std::collections::HashMap;

/// Most instructions in one block.
pub const MAX_INSNS: usize = 64;
const JUMP_SIZE: usize = 4096;

pub struct Block {
    pub insns: Vec<Insn>,
    /// Physical pages the block's bytes lie on (the second is `u64::MAX` if one page).
    pub pages: [u64; 2],
    /// Instruction pointers wrap at this mask (16-, 32- or 64-bit code).
    pub ip_mask: u64,
    /// RIP when the block was decoded (the instructions' `ip()` is their linear address).
    pub start_ip: u64,
    key: (u64, u32),
    /// Times the interpreter ran it (counted up to the translation threshold).
    pub hits: u32,
    /// Address of its translation, valid while `code_epoch` is the translator's epoch.
    pub code: usize,
    pub code_epoch: u32,
    /// The `Cpu::exec_key` bits (`core::TRANSLATION_MODE`) its translation was made for.
    pub code_mode: u32,
}

/// A jump-cache entry: the block for linear PC `pc` run with `mode`, found when `pc` was on
/// physical page `ppage`. It stays valid across address-space switches: a hit also needs
/// the TLB to map `pc`'s page to `ppage` for execution now.
#[derive(Clone, Copy)]
struct JumpEntry {
    pc: u64,
    ppage: u64,
    /// `Cpu::exec_key`
    mode: u32,
    id: u32,
}

const NO_JUMP: JumpEntry = JumpEntry {
    pc: u64::MAX,
    ppage: u64::MAX,
    mode: 0,
    id: 0,
};

pub struct BlockCache {
    blocks: Vec<Option<Block>>,
    free: Vec<u32>,
    map: HashMap<(u64, u32), u32, AddrHash>,
    by_page: HashMap<u64, Vec<u32>, AddrHash>,
    jump: Vec<JumpEntry>,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache::new()
    }
}

/// A hash for the block maps' keys (guest-physical addresses and a bitness): one multiply
/// per word instead of SipHash, which cost more than the rest of a block lookup. A guest that
/// placed its code to make keys collide would slow down only its own lookups.
#[derive(Clone, Copy, Default)]
struct AddrHash;

impl std::hash::BuildHasher for AddrHash {
    type Hasher = AddrHasher;
    fn build_hasher(&self) -> AddrHasher {
        AddrHasher(0)
    }
}

struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing: the multiply spreads the page-number bits into the high bits
        // hashbrown uses for its control bytes, the rotation keeps the low ones for the index.
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }
}

/// Does executing `i` end the run of code a block covers? Unconditional branches, calls,
/// returns and interrupts do, and so do the instructions whose handlers return
/// `Flow::Resync` (the executor leaves the block there, so decoding past them would be
/// wasted). A conditional branch does not: the block goes on with the path where it is not
/// taken, and leaves where it is (the interpreter's handler returns `Flow::Jump` then, and
/// translated code leaves through a side exit).
fn ends_block(i: &Instruction) -> bool {
    use Mnemonic::*;
    if !matches!(
        i.flow_control(),
        FlowControl::Next | FlowControl::ConditionalBranch
    ) {
        return true;
    }
    match i.mnemonic() {
        Mov => i.op0_register().is_cr() || i.op0_register().is_segment_register(),
        Pop => i.op0_register().is_segment_register(),
        Wrmsr | Lgdt | Lidt | Lldt | Ltr | Lmsw | Invlpg | Sti | Popf | Popfd | Popfq | Hlt
        | Lds | Les | Lfs | Lgs | Lss => true,
        _ => false,
    }
}

impl Block {
    /// Guest-physical address of the first instruction.
    pub fn start_phys(&self) -> u64 {
        self.key.0
    }

    /// Whether all its bytes lie on one page.
    pub fn one_page(&self) -> bool {
        self.pages[1] == u64::MAX
    }
}

impl BlockCache {
    pub fn new() -> BlockCache {
        BlockCache {
            blocks: Vec::new(),
            free: Vec::new(),
            map: HashMap::default(),
            by_page: HashMap::default(),
            jump: vec![NO_JUMP; JUMP_SIZE],
        }
    }

    pub fn get_mut(&mut self, id: u32) -> &mut Block {
        // As in `get`.
        self.blocks[id as usize].as_mut().expect("block id is live")
    }

    pub fn get(&self, id: u32) -> &Block {
        // Ids handed out by `lookup` always refer to live blocks until `invalidate_page`, after
        // which the caller looks up again.
        self.blocks[id as usize].as_ref().expect("block id is live")
    }

    pub fn flush_jump_cache(&mut self) {
        self.jump.fill(NO_JUMP);
    }

    fn jump_slot(pc: u64) -> usize {
        ((pc ^ (pc >> 12)) as usize) & (JUMP_SIZE - 1)
    }

    /// The block starting at the CPU's current RIP, decoding it if needed.
    #[inline(always)]
    pub fn lookup(&mut self, cpu: &mut Cpu) -> Result<u32, Stop> {
        let mode = cpu.exec_key;
        let pc = if cpu.long64 {
            cpu.r.rip
        } else {
            cpu.r.seg[CS].base.wrapping_add(cpu.r.rip) & 0xffff_ffff
        };
        let j = self.jump[Self::jump_slot(pc)];
        if j.pc == pc && j.mode == mode {
            // Still the same code at that address (the TLB entry says where it is now)?
            let e = &cpu.tlb.e[cpu.mmu_idx & 1][((pc >> 12) as usize) & (TLB_SIZE - 1)];
            if e.tag_x == pc >> 12 && e.ppage == j.ppage {
                return Ok(j.id);
            }
        }
        self.lookup_slow(cpu, pc, mode)
    }

    #[inline(never)]
    fn lookup_slow(&mut self, cpu: &mut Cpu, pc: u64, mode: u32) -> Result<u32, Stop> {
        let bitness = mode & 0xff;
        let slot = Self::jump_slot(pc);
        // The page walk (for a TLB miss) checks that the code may run here now.
        let phys = cpu.code_address(pc)?;
        let j = self.jump[slot];
        if j.pc == pc && j.mode == mode && j.ppage == phys >> 12 {
            return Ok(j.id);
        }
        let id = match self.map.get(&(phys, bitness)) {
            Some(&id) => id,
            None => self.decode(cpu, pc, phys, bitness)?,
        };
        self.jump[slot] = JumpEntry {
            pc,
            ppage: phys >> 12,
            mode,
            id,
        };
        Ok(id)
    }

    fn decode(&mut self, cpu: &mut Cpu, pc: u64, phys: u64, bitness: u32) -> Result<u32, Stop> {
        // Bytes from `pc` to the end of its page, plus up to 15 from the next page for an
        // instruction that straddles the boundary.
        let mut bytes = [0u8; 4096 + 15];
        let (_, n) = cpu.fetch(pc, &mut bytes[..4096])?;
        let mut second = u64::MAX;
        let mut avail = n;
        let next_page = (pc & !0xfff).wrapping_add(0x1000);
        let next_page = if bitness == 64 {
            next_page
        } else {
            next_page & 0xffff_ffff
        };
        let mut tried_next = false;
        let mut insns = Vec::new();
        let mut offset = 0usize;
        loop {
            let mut decoder = Decoder::with_ip(
                bitness,
                &bytes[offset..avail],
                pc.wrapping_add(offset as u64),
                DecoderOptions::NONE,
            );
            let mut i = Instruction::default();
            decoder.decode_out(&mut i);
            let incomplete = decoder.last_error() == iced_x86::DecoderError::NoMoreBytes;
            if incomplete && !tried_next && offset < n && n + 15 > avail {
                // The instruction runs onto the next page: fetch it (this may fault, and
                // should, if this is the block's first instruction).
                tried_next = true;
                let mut tail = [0u8; 15];
                match cpu.fetch(next_page, &mut tail) {
                    Ok((p2, m)) => {
                        bytes[n..n + m.min(15)].copy_from_slice(&tail[..m.min(15)]);
                        avail = n + m.min(15);
                        second = p2 >> 12;
                        continue;
                    }
                    Err(e) if insns.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            if incomplete {
                if insns.is_empty() {
                    // Cannot even decode one instruction (bytes run out of RAM): #UD.
                    insns.push(decode::lower(&i, bitness, cpu.isa));
                }
                break;
            }
            let len = i.len();
            insns.push(decode::lower(&i, bitness, cpu.isa));
            offset += len;
            if ends_block(&i) || insns.len() >= MAX_INSNS || offset >= n {
                break;
            }
        }
        cpu.stats.blocks_decoded += 1;
        let first_page = phys >> 12;
        let pages = [first_page, second];
        let block = Block {
            insns,
            pages,
            ip_mask: match bitness {
                64 => u64::MAX,
                32 => 0xffff_ffff,
                _ => 0xffff,
            },
            start_ip: cpu.r.rip,
            key: (phys, bitness),
            hits: 0,
            code: 0,
            code_epoch: 0,
            code_mode: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.blocks[id as usize] = Some(block);
                id
            }
            None => {
                self.blocks.push(Some(block));
                (self.blocks.len() - 1) as u32
            }
        };
        self.map.insert((phys, bitness), id);
        for p in pages.into_iter().filter(|&p| p != u64::MAX) {
            self.by_page.entry(p).or_default().push(id);
            if !cpu.mem.is_code_page(p) {
                cpu.mem.set_code_page(p, true);
                cpu.tlb.protect_code(p);
            }
        }
        Ok(id)
    }

    /// Drops every block with bytes on physical page `ppage`.
    pub fn invalidate_page(&mut self, cpu: &mut Cpu, ppage: u64) {
        let Some(ids) = self.by_page.remove(&ppage) else {
            cpu.mem.set_code_page(ppage, false);
            return;
        };
        for id in ids {
            if let Some(b) = self.blocks[id as usize].take() {
                self.map.remove(&b.key);
                for p in b.pages {
                    if p != ppage && p != u64::MAX {
                        if let Some(v) = self.by_page.get_mut(&p) {
                            v.retain(|&x| x != id);
                        }
                    }
                }
                self.free.push(id);
                cpu.stats.blocks_invalidated += 1;
            }
        }
        cpu.mem.set_code_page(ppage, false);
        self.flush_jump_cache();
        // Caches keyed by virtual address elsewhere (the translator's jump table) watch these.
        cpu.tlb.generation += 1;
        cpu.tlb.global_generation += 1;
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
