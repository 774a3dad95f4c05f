fn main() {
    #[cfg(feature = "shell")]
    tauri_build::build();
}
