fn main() {
    let a: Vec<String> = std::env::args().collect();
    let img = image::open(&a[1]).expect("open").into_rgba8();
    let x: u32 = a[2].parse().expect("x");
    let (y0, y1): (u32, u32) = (a[3].parse().expect("y0"), a[4].parse().expect("y1"));
    for y in y0..y1 { println!("{x},{y} {:?}", img.get_pixel(x, y).0); }
}
