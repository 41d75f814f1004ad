//! Just enough ELF to tell a statically linked executable from one that
//! needs the dynamic loader: a `PT_INTERP` program header names the loader
//! (`/lib64/ld-linux-x86-64.so.2`). Static-pie binaries have `PT_DYNAMIC`
//! (they relocate themselves) but no `PT_INTERP`, and run on any node's
//! kernel whatever its glibc (see `scripts/build-release.sh`).

use thiserror::Error;

const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 0x3e;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit little-endian x86_64 executable")]
    WrongArch,
    #[error("truncated ELF headers")]
    Truncated,
}

/// How an executable is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linking {
    /// No `PT_INTERP`: runs without a dynamic loader.
    Static,
    /// Needs the loader at this path.
    Dynamic { interpreter: String },
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ElfError> {
    let s = b.get(at..at + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ElfError> {
    let s = b.get(at..at + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ElfError> {
    let s = b.get(at..at + 8).ok_or(ElfError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn usize_of(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError::Truncated)
}

/// Reads the ELF64 program headers of an x86_64 executable.
pub fn linking(bytes: &[u8]) -> Result<Linking, ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    if bytes.get(4..6) != Some(&[2, 1]) || u16_at(bytes, 0x12)? != EM_X86_64 {
        return Err(ElfError::WrongArch);
    }
    let phoff = usize_of(u64_at(bytes, 0x20)?)?;
    let phentsize = usize::from(u16_at(bytes, 0x36)?);
    let phnum = usize::from(u16_at(bytes, 0x38)?);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(bytes, ph)? != PT_INTERP {
            continue;
        }
        let off = usize_of(u64_at(bytes, ph + 0x08)?)?;
        let size = usize_of(u64_at(bytes, ph + 0x20)?)?;
        let raw = bytes.get(off..off + size).ok_or(ElfError::Truncated)?;
        let interpreter = String::from_utf8_lossy(raw)
            .trim_end_matches('\0')
            .to_owned();
        return Ok(Linking::Dynamic { interpreter });
    }
    Ok(Linking::Static)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A minimal ELF64 x86_64 header with the given program header types.
    fn elf(types: &[u32], interp: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        let data_off = 64 + 56 * types.len();
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            ph[0x08..0x10].copy_from_slice(&(data_off as u64).to_le_bytes());
            ph[0x20..0x28].copy_from_slice(&(interp.len() as u64).to_le_bytes());
            b.extend(ph);
        }
        b.extend(interp);
        b
    }

    #[test]
    fn static_pie_has_dynamic_but_no_interp() {
        assert_eq!(linking(&elf(&[6, 1, 2], b"")).unwrap(), Linking::Static);
    }

    #[test]
    fn interp_names_the_loader() {
        let b = elf(&[6, PT_INTERP, 1], b"/lib64/ld-linux-x86-64.so.2\0");
        assert_eq!(
            linking(&b).unwrap(),
            Linking::Dynamic {
                interpreter: "/lib64/ld-linux-x86-64.so.2".into()
            }
        );
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        // cargo test binaries link glibc dynamically (no crt-static here).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(matches!(linking(&me).unwrap(), Linking::Dynamic { .. }));
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert_eq!(linking(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        let mut b = elf(&[PT_INTERP], b"/lib/ld.so");
        b.truncate(80);
        assert_eq!(linking(&b), Err(ElfError::Truncated));
        let mut b = elf(&[], b"");
        b[4] = 1;
        assert_eq!(linking(&b), Err(ElfError::WrongArch));
    }
}
