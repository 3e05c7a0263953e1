//! Runs `basic_clean` (template all) on a file and writes the outputs and thumbnails to a folder,
//! plus PNG previews for eyeballing: each JPEG as PNG and the matte composited on dark blue
//! (set ZOOM=x,y,w,h to also get that region enlarged).
//!
//! `cargo run -p atelier-engine --example clean_file -- assets/sample-product.jpg /tmp/clean`

use std::path::Path;

use atelier_engine::{basic_clean, CleanTemplate, Format, Limits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (input, dir) = match (args.next(), args.next()) {
        (Some(i), Some(d)) => (i, d),
        _ => return Err("usage: clean_file INPUT OUTPUT_DIR".into()),
    };
    let bytes = std::fs::read(&input)?;
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    image::load_from_memory(&bytes)?.save(dir.join("source.preview.png"))?;
    let started = std::time::Instant::now();
    let outputs = basic_clean(
        &bytes,
        CleanTemplate::All,
        &Limits::default(),
        &mut |stage, pct| println!("{pct:>3}% {stage}"),
    )?;
    println!("basic_clean took {:?}", started.elapsed());
    for r in outputs {
        let path = dir.join(&r.name);
        std::fs::write(&path, &r.data)?;
        let stem = r.name.split('.').next().unwrap_or("output");
        let thumb = format!("thumb-{stem}.{}", r.thumbnail.format.extension());
        std::fs::write(dir.join(&thumb), &r.thumbnail.data)?;
        println!(
            "{} {}x{} {} bytes; {thumb} {}x{}",
            path.display(),
            r.width,
            r.height,
            r.data.len(),
            r.thumbnail.width,
            r.thumbnail.height
        );
        let img = image::load_from_memory(&r.data)?;
        if r.format == Format::Jpeg {
            img.save(dir.join(format!("{}.preview.png", r.name)))?;
        } else {
            let mut rgba = img.into_rgba8();
            for p in rgba.pixels_mut() {
                let a = u32::from(p.0[3]);
                for (v, bg) in p.0.iter_mut().zip([20u32, 30, 90]) {
                    *v = ((u32::from(*v) * a + bg * (255 - a)) / 255) as u8;
                }
                p.0[3] = 255;
            }
            rgba.save(dir.join("matting-on-dark.png"))?;
            // ZOOM=x,y,w,h also writes that region of the composite enlarged 3x, to inspect edges.
            if let Ok(zoom) = std::env::var("ZOOM") {
                let v: Vec<u32> = zoom.split(',').filter_map(|s| s.parse().ok()).collect();
                if let [x, y, w, h] = v[..] {
                    let region = image::imageops::crop_imm(&rgba, x, y, w, h).to_image();
                    let big =
                        image::imageops::resize(&region, w * 3, h * 3, image::imageops::Nearest);
                    big.save(dir.join("zoom.png"))?;
                }
            }
        }
    }
    Ok(())
}
