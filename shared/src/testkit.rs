//! Seeded test data that more than one crate's tests use (behind the `testkit` feature).

/// A CSV contact list: a `Name,Email` header and `n` people, `Person {i},p{i}@example.com`.
pub fn contacts_csv(n: usize) -> String {
    let mut s = String::from("Name,Email\n");
    for i in 0..n {
        s.push_str(&format!("Person {i},p{i}@example.com\n"));
    }
    s
}

/// `n` bytes that do not compress, the same for the same `seed` (a xorshift; `seed` must not
/// be 0).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
