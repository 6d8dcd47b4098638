//! The IDX format of MNIST and Fashion-MNIST (<http://yann.lecun.com/exdb/mnist/>), plain or
//! gzip-compressed: a magic number `00 00 TT NN` (TT = element type, NN = number of dimensions),
//! NN big-endian u32 dimensions, then the elements, row-major. Only unsigned bytes (TT = 0x08)
//! are read and written: labels are `0x00000801` (N), images `0x00000803` (N x rows x cols).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::bufread::MultiGzDecoder;

/// Magic number of an IDX label file: unsigned bytes, one dimension.
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX image file: unsigned bytes, three dimensions.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

const UBYTE: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The images of an IDX3 file: `count` images of `rows` x `cols` grey bytes, one after another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Reads an IDX image file (`0x00000803`, ubyte), raw or gzip-compressed.
pub fn read_images(path: &Path) -> Result<Images> {
    images_from_content(decode_file(path)?, &path.display().to_string())
}

/// Reads an IDX label file (`0x00000801`, ubyte), raw or gzip-compressed.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    labels_from_content(decode_file(path)?, &path.display().to_string())
}

/// Writes `count` images of `rows` x `cols` bytes as a raw (uncompressed) IDX3 ubyte file.
pub fn write_images(
    path: &Path,
    count: usize,
    rows: usize,
    cols: usize,
    pixels: &[u8],
) -> Result<()> {
    match count.checked_mul(rows).and_then(|n| n.checked_mul(cols)) {
        Some(n) if n == pixels.len() => {}
        Some(n) => bail!(
            "cannot write {}: {count} x {rows} x {cols} images need {n} bytes, got {}",
            path.display(),
            pixels.len()
        ),
        None => bail!(
            "cannot write {}: {count} x {rows} x {cols} images are too many bytes",
            path.display()
        ),
    }
    let mut header = IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [count, rows, cols] {
        let d = u32::try_from(d).with_context(|| {
            format!(
                "cannot write {}: dimension {d} does not fit the IDX format (u32)",
                path.display()
            )
        })?;
        header.extend_from_slice(&d.to_be_bytes());
    }
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&header)?;
        out.write_all(pixels)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// The content of a file, decompressed if it starts with the gzip magic bytes `1f 8b`.
pub(crate) fn decode_file(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    decode(BufReader::new(file), size, &path.display().to_string())
}

/// The content of in-memory bytes, decompressed if they start with the gzip magic bytes.
pub(crate) fn decode_bytes(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    decode(bytes, bytes.len(), name)
}

fn decode(mut reader: impl BufRead, size: usize, name: &str) -> Result<Vec<u8>> {
    let gzipped =
        reader.fill_buf().with_context(|| format!("cannot read {name}"))?.starts_with(&GZIP_MAGIC);
    let mut content = Vec::new();
    if gzipped {
        MultiGzDecoder::new(reader)
            .read_to_end(&mut content)
            .with_context(|| format!("{name}: bad or truncated gzip data"))?;
    } else {
        content.reserve_exact(size);
        reader.read_to_end(&mut content).with_context(|| format!("cannot read {name}"))?;
    }
    Ok(content)
}

/// Parses decompressed IDX image content; `name` (the file) is quoted in errors.
pub(crate) fn images_from_content(content: Vec<u8>, name: &str) -> Result<Images> {
    let (dims, pixels) = parse(content, name, IMAGES_MAGIC)?;
    Ok(Images { count: dims[0], rows: dims[1], cols: dims[2], pixels })
}

/// Parses decompressed IDX label content; `name` (the file) is quoted in errors.
pub(crate) fn labels_from_content(content: Vec<u8>, name: &str) -> Result<Vec<u8>> {
    Ok(parse(content, name, LABELS_MAGIC)?.1)
}

fn parse(mut content: Vec<u8>, name: &str, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let kind = if magic == IMAGES_MAGIC { "image" } else { "label" };
    let ndims = (magic & 0xff) as usize;
    let Some(head) = content.first_chunk::<4>() else {
        bail!("{name}: {} bytes, too short for an IDX header", content.len());
    };
    let found = u32::from_be_bytes(*head);
    if head[..2] != [0, 0] {
        bail!(
            "{name}: not an IDX file: magic number 0x{found:08x}, an IDX {kind} file starts with 0x{magic:08x}"
        );
    }
    if head[2] != UBYTE {
        let ty = match head[2] {
            0x09 => "signed byte",
            0x0b => "i16",
            0x0c => "i32",
            0x0d => "f32",
            0x0e => "f64",
            _ => "not a valid IDX type",
        };
        bail!(
            "{name}: IDX element type 0x{:02x} ({ty}) in magic number 0x{found:08x}; only 0x08 (unsigned byte) \
             is supported, an IDX {kind} file starts with 0x{magic:08x}",
            head[2]
        );
    }
    if head[3] as usize != ndims {
        let looks_like = match head[3] {
            1 => " (that of a label file)",
            3 => " (that of an image file)",
            _ => "",
        };
        bail!(
            "{name}: magic number 0x{found:08x} says {} dimension(s){looks_like}; an IDX {kind} file has {ndims} \
             (magic 0x{magic:08x})",
            head[3]
        );
    }
    let header_len = 4 + 4 * ndims;
    if content.len() < header_len {
        bail!(
            "{name}: truncated IDX header: {ndims} dimension(s) need {header_len} header bytes, the file has {}",
            content.len()
        );
    }
    let dims: Vec<usize> = content[4..header_len]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes(d.try_into().unwrap()) as usize)
        .collect();
    let shape = dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(" x ");
    let expected = dims.iter().map(|&d| d as u64).product::<u64>();
    let data_len = (content.len() - header_len) as u64;
    if data_len < expected {
        bail!(
            "{name}: truncated: the header says {shape} = {expected} bytes of data, only {data_len} follow it"
        );
    }
    if data_len > expected {
        bail!(
            "{name}: {} bytes of unexpected data after the {expected} bytes ({shape}) that the header describes",
            data_len - expected
        );
    }
    content.drain(..header_len);
    Ok((dims, content))
}
