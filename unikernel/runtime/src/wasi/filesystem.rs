//! `wasi:filesystem` without files: there are no preopened directories, so a guest never holds a
//! descriptor, and every descriptor method is unreachable (it traps, should one be called).
//! Rust's std imports these interfaces whether or not a function touches a file.

use alloc::string::String;
use alloc::vec::Vec;

use wasmtime::Result;
use wasmtime::component::Resource;

use super::generated::wasi::filesystem::preopens;
use super::generated::wasi::filesystem::types::{
    self, Advice, Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry,
    DirectoryEntryStream, ErrorCode, Filesize, InputStream, MetadataHashValue, NewTimestamp,
    OpenFlags, OutputStream, PathFlags,
};
use super::{HostState, trap};

/// What every descriptor method answers: no descriptor can exist.
fn no_files<T>() -> Result<T> {
    Err(trap("the unikernel's host has no files"))
}

type FsResult<T> = Result<core::result::Result<T, ErrorCode>>;

impl preopens::Host for HostState {
    fn get_directories(&mut self) -> Result<Vec<(Resource<Descriptor>, String)>> {
        Ok(Vec::new())
    }
}

impl types::Host for HostState {
    fn filesystem_error_code(
        &mut self,
        _error: Resource<types::Error>,
    ) -> Result<Option<ErrorCode>> {
        Ok(None)
    }
}

impl types::HostDirectoryEntryStream for HostState {
    fn read_directory_entry(
        &mut self,
        _stream: Resource<DirectoryEntryStream>,
    ) -> FsResult<Option<DirectoryEntry>> {
        no_files()
    }

    fn drop(&mut self, _stream: Resource<DirectoryEntryStream>) -> Result<()> {
        no_files()
    }
}

impl types::HostDescriptor for HostState {
    fn read_via_stream(
        &mut self,
        _: Resource<Descriptor>,
        _: Filesize,
    ) -> FsResult<Resource<InputStream>> {
        no_files()
    }

    fn write_via_stream(
        &mut self,
        _: Resource<Descriptor>,
        _: Filesize,
    ) -> FsResult<Resource<OutputStream>> {
        no_files()
    }

    fn append_via_stream(&mut self, _: Resource<Descriptor>) -> FsResult<Resource<OutputStream>> {
        no_files()
    }

    fn advise(
        &mut self,
        _: Resource<Descriptor>,
        _: Filesize,
        _: Filesize,
        _: Advice,
    ) -> FsResult<()> {
        no_files()
    }

    fn sync_data(&mut self, _: Resource<Descriptor>) -> FsResult<()> {
        no_files()
    }

    fn get_flags(&mut self, _: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        no_files()
    }

    fn get_type(&mut self, _: Resource<Descriptor>) -> FsResult<DescriptorType> {
        no_files()
    }

    fn set_size(&mut self, _: Resource<Descriptor>, _: Filesize) -> FsResult<()> {
        no_files()
    }

    fn set_times(
        &mut self,
        _: Resource<Descriptor>,
        _: NewTimestamp,
        _: NewTimestamp,
    ) -> FsResult<()> {
        no_files()
    }

    fn read(
        &mut self,
        _: Resource<Descriptor>,
        _: Filesize,
        _: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        no_files()
    }

    fn write(&mut self, _: Resource<Descriptor>, _: Vec<u8>, _: Filesize) -> FsResult<Filesize> {
        no_files()
    }

    fn read_directory(
        &mut self,
        _: Resource<Descriptor>,
    ) -> FsResult<Resource<DirectoryEntryStream>> {
        no_files()
    }

    fn sync(&mut self, _: Resource<Descriptor>) -> FsResult<()> {
        no_files()
    }

    fn create_directory_at(&mut self, _: Resource<Descriptor>, _: String) -> FsResult<()> {
        no_files()
    }

    fn stat(&mut self, _: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        no_files()
    }

    fn stat_at(
        &mut self,
        _: Resource<Descriptor>,
        _: PathFlags,
        _: String,
    ) -> FsResult<DescriptorStat> {
        no_files()
    }

    fn set_times_at(
        &mut self,
        _: Resource<Descriptor>,
        _: PathFlags,
        _: String,
        _: NewTimestamp,
        _: NewTimestamp,
    ) -> FsResult<()> {
        no_files()
    }

    fn link_at(
        &mut self,
        _: Resource<Descriptor>,
        _: PathFlags,
        _: String,
        _: Resource<Descriptor>,
        _: String,
    ) -> FsResult<()> {
        no_files()
    }

    fn open_at(
        &mut self,
        _: Resource<Descriptor>,
        _: PathFlags,
        _: String,
        _: OpenFlags,
        _: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        no_files()
    }

    fn readlink_at(&mut self, _: Resource<Descriptor>, _: String) -> FsResult<String> {
        no_files()
    }

    fn remove_directory_at(&mut self, _: Resource<Descriptor>, _: String) -> FsResult<()> {
        no_files()
    }

    fn rename_at(
        &mut self,
        _: Resource<Descriptor>,
        _: String,
        _: Resource<Descriptor>,
        _: String,
    ) -> FsResult<()> {
        no_files()
    }

    fn symlink_at(&mut self, _: Resource<Descriptor>, _: String, _: String) -> FsResult<()> {
        no_files()
    }

    fn unlink_file_at(&mut self, _: Resource<Descriptor>, _: String) -> FsResult<()> {
        no_files()
    }

    fn is_same_object(&mut self, _: Resource<Descriptor>, _: Resource<Descriptor>) -> Result<bool> {
        no_files()
    }

    fn metadata_hash(&mut self, _: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        no_files()
    }

    fn metadata_hash_at(
        &mut self,
        _: Resource<Descriptor>,
        _: PathFlags,
        _: String,
    ) -> FsResult<MetadataHashValue> {
        no_files()
    }

    fn drop(&mut self, _: Resource<Descriptor>) -> Result<()> {
        no_files()
    }
}
