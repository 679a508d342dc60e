//! The `warden` command line (subcommands arrive with their issues).
fn main() {
    println!("warden");
}
