use atelier_engine::*;
fn main() {
    let src = std::fs::read("/work/main/assets/sample-product.jpg").expect("read");
    let big = transform(&src, &TransformRecipe { resize: Some(Resize { width: 4000, height: 3000, fit: Fit::Fill }), quality: 92, ..Default::default() }, &Limits::default(), &mut |_, _| {}).expect("big");
    let big = &big[0].data;
    println!("12MP jpeg {} bytes", big.len());
    for (name, recipe) in [
        ("512 q85 (scaled decode)", TransformRecipe { resize: Some(Resize { width: 512, height: 0, fit: Fit::Contain }), ..Default::default() }),
        ("512 q85 with crop (full decode)", TransformRecipe { crop: Some(Crop { x: 0, y: 0, width: 4000, height: 3000 }), resize: Some(Resize { width: 512, height: 0, fit: Fit::Contain }), ..Default::default() }),
    ] {
        let t = std::time::Instant::now();
        for _ in 0..5 { transform(big, &recipe, &Limits::default(), &mut |_, _| {}).expect("t"); }
        println!("{name}: {:?} per run", t.elapsed() / 5);
    }
    let t = std::time::Instant::now();
    basic_clean(big, CleanTemplate::All, &Limits::default(), &mut |_, _| {}).expect("clean");
    println!("basic_clean all 12MP: {:?}", t.elapsed());
}
