//! Secret material: random tokens and their hashes, the data directory's key files, sealing
//! at rest, and password hashing. Imports nothing of the server but its errors and clock.

pub mod aead;
pub mod field_cipher;
pub mod kek;
pub mod key_file;
pub mod passwords;
pub mod random;
pub mod seal;
pub mod store_key;
